"""The announcer daemon in the lab: the acceptance of the daemon, each figure measured from
the fault (or command) to the change in r1's kernel FIB, read over netlink every 2 ms.

Every test leaves the lab as it found it (apiservers ready, daemons running and undrained,
three nexthops per VIP), and checks that r1 never learnt anything but the VIPs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pytest

from announcer.config import Config, parse_config, read_document
from announcer.health import Health
from announcer.lab import frr, netns
from announcer.lab import node as lab_node
from announcer.lab.apiserver.control import request as control_request
from announcer.lab.fib import Fib, IPAddress, wait_for
from announcer.lab.topology import Topology
from announcer.lifecycle import Lifecycle
from announcer.status_client import DaemonUnreachable, query, snapshot_from_json
from announcer.status_protocol import StatusSnapshot

if TYPE_CHECKING:
    from conftest import RunningLab

# The lab tests need root and FRR (the `lab` fixture skips, or fails under
# ANNOUNCER_REQUIRE_NETNS=1, without them); the node's supervision tests run anywhere.
netns_test = pytest.mark.netns

VIP4, VIP6 = ip_network("198.51.100.10/32"), ip_network("2001:db8:100::10/128")
VIPS: tuple[IPv4Network | IPv6Network, ...] = (VIP4, VIP6)
CPS = ("cp1", "cp2", "cp3")
GATEWAYS = {
    node: {4: ip_address(f"192.0.2.{4 * n - 2}"), 6: ip_address(f"2001:db8:{n}::2")}
    for n, node in enumerate(CPS, start=1)
}
RUN = PurePosixPath("/run/announcer")
RESTORE_TIMEOUT = 20.0
HopsCheck = Callable[[IPv4Network | IPv6Network, frozenset[IPAddress]], bool]


# ---- helpers ------------------------------------------------------------------------------------


def node_config(topology: Topology, node: str) -> Config:
    config_dir = topology.bind_source(node, "/etc/announcer")
    assert config_dir is not None
    return parse_config(read_document(config_dir / "config.yaml"))


def run_dir(topology: Topology, node: str) -> Path:
    path = topology.bind_source(node, RUN)
    assert path is not None
    return path


def status(topology: Topology, node: str) -> StatusSnapshot:
    answer = query(run_dir(topology, node) / "status.sock", {"op": "status"}, timeout=5.0)
    snapshot = answer["status"]
    assert isinstance(snapshot, dict)
    return snapshot_from_json(snapshot)


def answering(topology: Topology, node: str) -> bool:
    try:
        status(topology, node)
    except DaemonUnreachable:
        return False
    return True


def cli(topology: Topology, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`announcer lab exec NODE -- announcer ARGV...`"""
    command = [*lab_exec(topology, node), "announcer", *argv]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def lab_exec(topology: Topology, node: str) -> list[str]:
    return [sys.executable, "-m", "announcer", "lab", "exec", "-t", str(topology.path), node, "--"]


def apiserver(
    topology: Topology, node: str, state: str, *, delay: float = 0.0
) -> dict[str, object]:
    sock = run_dir(topology, node) / "lab-apiserver.sock"
    message: dict[str, object] = {"op": "set", "state": state, "delay": delay}
    return control_request(sock, message)


def apiserver_listening(topology: Topology, node: str) -> bool:
    answer = control_request(run_dir(topology, node) / "lab-apiserver.sock", {"op": "get"})
    return answer.get("listening") is True


def node_processes(topology: Topology, node: str, match: Callable[[list[str]], bool]) -> list[int]:
    """Pids of live processes in `node` whose argv satisfies `match`."""
    found = []
    for pid in netns.netns_pids(topology.netns(node)):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        argv = [arg.decode(errors="replace") for arg in raw.split(b"\0")]
        if match(argv) and netns.process_id(pid) is not None:  # not a zombie
            found.append(pid)
    return found


def is_daemon(argv: list[str]) -> bool:
    return {"announcer", "run", "--config"} <= set(argv)


def is_exabgp(argv: list[str]) -> bool:
    """ExaBGP or its relay."""
    return any(Path(arg).name in ("exabgp", "relay.py") for arg in argv)


def daemon_pid(topology: Topology, node: str) -> int:
    pids = node_processes(topology, node, is_daemon)
    assert len(pids) == 1, f"{node}: announcer run processes {pids}"
    return pids[0]


def without(node: str) -> HopsCheck:
    return lambda vip, hops: GATEWAYS[node][vip.version] not in hops


def with_(node: str) -> HopsCheck:
    return lambda vip, hops: GATEWAYS[node][vip.version] in hops


def all_three(vip: IPv4Network | IPv6Network, hops: frozenset[IPAddress]) -> bool:
    return hops == {GATEWAYS[node][vip.version] for node in CPS}


def wait_fib(fib: Fib, check: HopsCheck, timeout: float, *, start: float) -> float:
    """Seconds from `start` until `check` holds for both VIPs in r1's FIB."""
    while True:
        now = time.monotonic()
        hops = {vip: fib.nexthops(vip) for vip in VIPS}
        if all(check(vip, found) for vip, found in hops.items()):
            return now - start
        if now - start > timeout:
            seen = {str(vip): sorted(map(str, found)) for vip, found in hops.items()}
            raise AssertionError(f"r1's FIB not as expected after {timeout:g} s: {seen}")
        time.sleep(0.002)


def r1_paths(topology: Topology, vip: IPv4Network | IPv6Network) -> list[dict[str, object]]:
    family = "ipv4" if vip.version == 4 else "ipv6"
    route = frr.vtysh_json(topology.netns("r1"), f"show bgp {family} unicast {vip} json")
    paths = route.get("paths", [])
    assert isinstance(paths, list)
    return paths


def path_from(paths: list[dict[str, object]], gateway: IPAddress) -> dict[str, object] | None:
    for path in paths:
        peer = path.get("peer")
        if isinstance(peer, dict) and ip_address(str(peer.get("peerId"))) == gateway:
            return path
    return None


def graceful(path: dict[str, object] | None) -> bool:
    community = path.get("community") if path else None
    listed = community.get("list", []) if isinstance(community, dict) else []
    return path is not None and "gracefulShutdown" in listed and not path.get("multipath")


def assert_only_vips_learnt(topology: Topology) -> None:
    for family, vip in (("ipv4", VIP4), ("ipv6", VIP6)):
        table = frr.vtysh_json(topology.netns("r1"), f"show bgp {family} unicast json")
        routes = table.get("routes", {})
        assert isinstance(routes, dict)
        assert set(routes) <= {str(vip)}, f"r1 learnt {sorted(routes)}"


def restore(topology: Topology) -> None:
    """Apiservers ready, daemons running, answering and undrained, r1 back to three paths."""
    for node in CPS:
        for pid in node_processes(topology, node, is_daemon):
            os.kill(pid, signal.SIGCONT)
        apiserver(topology, node, "ready")
    for node in CPS:
        wait_for(partial(answering, topology, node), RESTORE_TIMEOUT, what=f"{node} daemon")
        if status(topology, node).drained:
            assert cli(topology, node, "undrain").returncode == 0
    with Fib(topology.netns("r1")) as fib:
        wait_fib(fib, all_three, RESTORE_TIMEOUT, start=time.monotonic())


@pytest.fixture
def topology(lab: RunningLab) -> Iterator[Topology]:
    """The shared lab, converged and checked before and after the test."""
    restore(lab.topology)
    assert_only_vips_learnt(lab.topology)
    try:
        yield lab.topology
    finally:
        assert_only_vips_learnt(lab.topology)
        restore(lab.topology)
        assert_only_vips_learnt(lab.topology)


# ---- acceptance ---------------------------------------------------------------------------------


@netns_test
def test_all_three_healthy_nodes_announce(topology: Topology) -> None:
    with Fib(topology.netns("r1")) as fib:
        for vip in VIPS:
            assert fib.nexthops(vip) == {GATEWAYS[node][vip.version] for node in CPS}
    for node in CPS:
        result = cli(topology, node, "status", "--json")
        assert result.returncode == 0, result.stderr
        snapshot = json.loads(result.stdout)
        assert snapshot["announced"] is True
        assert snapshot["health"] == "up"
        assert [(v["prefix"], v["announced"]) for v in snapshot["vips"]] == [
            (str(VIP4), True),
            (str(VIP6), True),
        ]
        assert {n["state"] for n in snapshot["neighbors"]} == {"up"}
        print(f"{node}: announced, last probe {snapshot['last_probe']['latency_ms']:.1f} ms")


@netns_test
def test_etcd_down_withdraws_then_ready_returns(topology: Topology) -> None:
    settings = node_config(topology, "cp1").apiserver
    leave_bound = settings.fall * settings.interval + settings.timeout + 0.5
    back_bound = settings.rise * settings.interval + settings.min_healthy + 0.5
    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        apiserver(topology, "cp1", "etcd-down")
        left = wait_fib(fib, without("cp1"), leave_bound + 3, start=start)
        snapshot = status(topology, "cp1")
        start = time.monotonic()
        apiserver(topology, "cp1", "ready")
        back = wait_fib(fib, with_("cp1"), back_bound + 5, start=start)
    print(f"etcd-down: cp1 left r1's FIB in {left:.3f} s (bound {leave_bound:.2f} s); "
          f"ready: back in {back:.3f} s (bound {back_bound:.2f} s)")  # fmt: skip
    assert left <= leave_bound
    assert back <= back_bound
    assert snapshot.announced is False
    assert snapshot.last_probe is not None and "etcd" in snapshot.last_probe.reason
    assert all("etcd" in vip.reason for vip in snapshot.vips)


@netns_test
def test_planned_shutdown_withdraws_before_the_listener_closes(topology: Topology) -> None:
    settings = node_config(topology, "cp1").apiserver
    bound = settings.interval + 0.5
    delay = 3.0
    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        apiserver(topology, "cp1", "shutdown", delay=delay)
        left = wait_fib(fib, without("cp1"), delay, start=start)
        still_listening = apiserver_listening(topology, "cp1")
        wait_for(lambda: not apiserver_listening(topology, "cp1"), delay + 5, interval=0.01)
        closed = time.monotonic() - start
    print(f"shutdown --delay {delay:g}: cp1 left r1's FIB in {left:.3f} s (bound {bound:.2f} s), "
          f"listener closed at {closed:.2f} s")  # fmt: skip
    assert still_listening
    assert left <= bound < closed


@netns_test
def test_exabgp_killed_is_restarted_and_routes_return(topology: Topology) -> None:
    before = status(topology, "cp1").exabgp
    assert before.pid is not None
    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        os.kill(before.pid, signal.SIGKILL)
        left = wait_fib(fib, without("cp1"), 5.0, start=start)
        back = wait_fib(fib, with_("cp1"), 10.0, start=start)
    after = status(topology, "cp1").exabgp
    print(f"exabgp SIGKILL: cp1 left in {left:.3f} s, back in {back:.3f} s (bound 5 s); "
          f"restarts {before.restarts} -> {after.restarts}")  # fmt: skip
    assert back <= 5.0
    assert after.restarts == before.restarts + 1
    assert after.pid != before.pid


@netns_test
def test_daemon_killed_withdraws_and_leaves_no_exabgp(topology: Topology) -> None:
    pid = daemon_pid(topology, "cp1")
    exabgp = status(topology, "cp1").exabgp.pid
    assert exabgp is not None
    exabgp_proc = netns.process_id(exabgp)
    assert exabgp_proc is not None
    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        left = wait_fib(fib, without("cp1"), 3.0, start=start)
        leftovers = node_processes(topology, "cp1", is_exabgp)
        exabgp_alive = netns.alive(exabgp_proc)
        back = wait_fib(fib, with_("cp1"), RESTORE_TIMEOUT, start=start)
    print(f"daemon SIGKILL: cp1 left r1's FIB in {left:.3f} s (bound 0.5 s); restarted by the "
          f"node, back in {back:.2f} s")  # fmt: skip
    assert left <= 0.5
    assert not exabgp_alive
    assert leftovers == []
    assert daemon_pid(topology, "cp1") != pid


@netns_test
def test_daemon_frozen_withdraws_then_recovers(topology: Topology) -> None:
    pid = daemon_pid(topology, "cp1")
    restarts = status(topology, "cp1").exabgp.restarts
    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            left = wait_fib(fib, without("cp1"), 6.0, start=start)
        finally:
            os.kill(pid, signal.SIGCONT)
        start = time.monotonic()
        back = wait_fib(fib, with_("cp1"), RESTORE_TIMEOUT, start=start)
    after = status(topology, "cp1").exabgp.restarts
    print(f"daemon SIGSTOP: cp1 left r1's FIB in {left:.3f} s (bound 3 s); after SIGCONT back "
          f"in {back:.2f} s, exabgp restarts {restarts} -> {after}")  # fmt: skip
    assert left <= 3.0
    assert daemon_pid(topology, "cp1") == pid  # the same daemon recovered
    assert after == restarts + 1


@netns_test
def test_drain_is_graceful_then_withdrawn_and_survives_a_restart(topology: Topology) -> None:
    config = node_config(topology, "cp2")
    gateway = GATEWAYS["cp2"][4]
    start = time.monotonic()
    drain = subprocess.Popen(
        [*lab_exec(topology, "cp2"), "announcer", "drain", "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: graceful(path_from(r1_paths(topology, VIP4), gateway)), 5.0, interval=0.01)
        graceful_at = time.monotonic() - start
        with Fib(topology.netns("r1")) as fib:
            out_of_ecmp = wait_fib(fib, without("cp2"), 2.0, start=start)
        wait_for(lambda: path_from(r1_paths(topology, VIP4), gateway) is None, 10.0, interval=0.01)
        withdrawn_at = time.monotonic() - start
        out, err = drain.communicate(timeout=30)
    finally:
        drain.kill()
        drain.wait()
    print(f"drain cp2: graceful-shutdown path at {graceful_at:.2f} s (out of ECMP at "
          f"{out_of_ecmp:.2f} s), withdrawn at {withdrawn_at:.2f} s "
          f"(drain.delay {config.drain.delay:g} s); drain --wait said {out.strip()!r}")  # fmt: skip
    assert drain.returncode == 0, err
    assert "withdrawn" in out
    assert graceful_at < withdrawn_at
    assert withdrawn_at >= config.drain.delay - 0.5
    assert cli(topology, "cp2", "status").returncode == 3

    pid = daemon_pid(topology, "cp2")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: node_processes(topology, "cp2", is_daemon) not in ([], [pid]), 20.0)
    wait_for(lambda: answering(topology, "cp2"), 20.0, what="cp2's new daemon")
    # Healthy, and it would announce by now: but it stays drained.
    wait_for(lambda: status(topology, "cp2").health is Health.UP, 10.0, what="cp2 healthy")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert path_from(r1_paths(topology, VIP4), gateway) is None
        time.sleep(0.1)
    snapshot = status(topology, "cp2")
    assert (snapshot.drained, snapshot.lifecycle, snapshot.announced) == (
        True,
        Lifecycle.DRAINED,
        False,
    )

    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        answer = query(run_dir(topology, "cp2") / "status.sock", {"op": "undrain"}, timeout=5)
        back = wait_fib(fib, with_("cp2"), 5.0, start=start)
    print(f"still drained after a daemon restart; undrain: back in {back:.3f} s")
    assert answer["ok"] is True
    assert back <= 1.0


@netns_test
def test_sigterm_drains_then_exits_within_delay_plus_2s(topology: Topology) -> None:
    config = node_config(topology, "cp3")
    gateway = GATEWAYS["cp3"][4]
    pid = daemon_pid(topology, "cp3")
    proc = netns.process_id(pid)
    assert proc is not None
    start = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: graceful(path_from(r1_paths(topology, VIP4), gateway)), 5.0, interval=0.01)
    graceful_at = time.monotonic() - start
    wait_for(lambda: path_from(r1_paths(topology, VIP4), gateway) is None, 10.0, interval=0.01)
    withdrawn_at = time.monotonic() - start
    wait_for(lambda: not netns.alive(proc), 10.0, interval=0.01)
    exited_at = time.monotonic() - start
    print(f"SIGTERM cp3: graceful at {graceful_at:.2f} s, withdrawn at {withdrawn_at:.2f} s, "
          f"exited at {exited_at:.2f} s "
          f"(bound drain.delay + 2 = {config.drain.delay + 2:g} s)")  # fmt: skip
    assert graceful_at < withdrawn_at <= exited_at
    assert withdrawn_at >= config.drain.delay - 0.5
    assert exited_at <= config.drain.delay + 2.0


@netns_test
def test_sighup_with_a_bad_file_keeps_announcing(topology: Topology) -> None:
    bad = topology.node_dir("cp1") / "bad-config.yaml"
    bad.write_text("vips: [10.0.0.0/8]\nbgp: {router_id: nope}\n")
    pid = daemon_pid(topology, "cp1")
    mount_ns = f"--mount=/proc/{pid}/ns/mnt"
    target = "/etc/announcer/config.yaml"
    subprocess.run(["nsenter", mount_ns, "mount", "--bind", str(bad), target], check=True)
    try:
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: status(topology, "cp1").config_error, 5.0, what="config_error")
        snapshot = status(topology, "cp1")
        with Fib(topology.netns("r1")) as fib:
            for _ in range(10):
                assert all(all_three(vip, fib.nexthops(vip)) for vip in VIPS)
                time.sleep(0.1)
    finally:
        subprocess.run(["nsenter", mount_ns, "umount", target], check=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    print(f"SIGHUP with a bad file: still announcing; config_error: {snapshot.config_error!r}")
    assert snapshot.announced
    assert "vips[0]" in str(snapshot.config_error)
    wait_for(lambda: status(topology, "cp1").config_error is None, 5.0, what="good reload")


# ---- the node process restarts the daemon, like systemd's Restart=always --------------------


def test_node_restarts_the_daemon_until_stopped(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    daemon = lab_node.Child(
        "announcer", ("sh", "-c", f"echo start >> {starts}; exit 3"), restart=True
    )
    apiserver = lab_node.Child("apiserver", ("sleep", "30"))

    async def main() -> int:
        supervising = asyncio.create_task(
            lab_node.supervise([apiserver, daemon], restart_delay=0.01)
        )
        while not starts.exists() or len(starts.read_text().splitlines()) < 3:
            assert not supervising.done()
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        return await asyncio.wait_for(supervising, 10)

    assert asyncio.run(main()) == 0


def test_node_stops_when_a_child_without_restart_exits(tmp_path: Path) -> None:
    daemon = lab_node.Child("announcer", ("sleep", "30"), restart=True)
    apiserver = lab_node.Child("apiserver", ("sh", "-c", "exit 4"))
    assert asyncio.run(asyncio.wait_for(lab_node.supervise([daemon, apiserver]), 20)) == 1


def test_the_node_restarts_only_the_announcer(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("{}\n")
    assert lab_node.choose_speaker(tmp_path).child.restart
    assert not lab_node.choose_speaker(tmp_path / "none").child.restart
    assert not lab_node.apiserver_child("cp1").restart

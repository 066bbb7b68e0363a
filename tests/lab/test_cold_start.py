"""A cold start in the lab (its own lab, `ops-test`): the cluster is bootstrapped through the
VIP it announces.

Every fake apiserver starts `stopped` (`lab up --apiserver-state stopped`): the BGP sessions
come up, but nothing is announced anywhere. cp2's apiserver then starts (`starting`: 500 with
post-start hooks pending; still nothing announced) and becomes ready, as under `kubeadm init`:
nobody serves the VIP, so cp2 announces at its first healthy answer and the client reaches
the VIP within `COLD_BOUND` of cp2's first 200. Then cp1 and cp3 start and join the ECMP set
as they become ready (`kubeadm join`), while cp2 stays in it throughout: others serve the VIP
by then, so each of them waits `rise` probes and `min_healthy` as usual.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import PurePosixPath

import pytest

from announcer.config import Config, load_config
from announcer.health import Health
from announcer.lab import frr, realiser
from announcer.lab.apiserver.control import request as control_request
from announcer.lab.cli import default_topology
from announcer.lab.fib import Fib, IPAddress
from announcer.lab.observe import LiveLab
from announcer.lab.topology import Topology, load_topology
from announcer.status_client import query, snapshot_from_json
from announcer.status_protocol import StatusSnapshot

LAB_NAME = "ops-test"
VIPS: tuple[IPv4Network | IPv6Network, ...] = (
    ip_network("198.51.100.10/32"),
    ip_network("2001:db8:100::10/128"),
)
CPS = ("cp1", "cp2", "cp3")
GATEWAYS = {
    node: {4: ip_address(f"192.0.2.{4 * n - 2}"), 6: ip_address(f"2001:db8:{n}::2")}
    for n, node in enumerate(CPS, start=1)
}
RUN = PurePosixPath("/run/announcer")
CONFIG = PurePosixPath("/etc/announcer/config.yaml")
MARGIN = 0.5  # BGP UPDATE, r1's FIB, the client's first connection
COLD_BOUND = 1.0  # first 200 of the first apiserver -> the VIP answers the client

# Runs in the client's namespace: connect to each VIP every 5 ms; print the monotonic time of
# the first connection that succeeds (the clock is the host's: namespaces share it).
REACH = """
import socket, sys, time
targets = dict.fromkeys(sys.argv[2:])
deadline = time.monotonic() + float(sys.argv[1])
while targets and time.monotonic() < deadline:
    for vip in list(targets):
        try:
            socket.create_connection((vip, 6443), timeout=0.05).close()
        except OSError:
            continue
        print(vip, time.monotonic(), flush=True)
        del targets[vip]
    time.sleep(0.005)
"""


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, mounts)"
    missing = [tool for tool in ("ip", "unshare", "mount", "curl") if shutil.which(tool) is None]
    missing += frr.missing_binaries()
    return f"the lab needs {', '.join(missing)}" if missing else None


@pytest.fixture(scope="module")
def cold_lab() -> Iterator[Topology]:
    """The lab `ops-test`, up with every apiserver stopped; removed afterwards."""
    if (reason := _unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANNOUNCER_LAB_NAME", LAB_NAME)
        patch.delenv("ANNOUNCER_LAB_TOPOLOGY", raising=False)
        topology = load_topology(default_topology())
        assert topology.name == LAB_NAME
        realiser.down(topology, say=lambda _: None)
        try:
            took = realiser.up(topology, say=print, apiserver_state="stopped")
            print(f"lab {LAB_NAME} up (cold: every apiserver stopped) in {took:.2f} s")
            yield topology
        finally:
            realiser.down(topology, say=print)


def node_config(topology: Topology, node: str) -> Config:
    path = topology.bind_source(node, CONFIG)
    assert path is not None
    return load_config(path)


def status(topology: Topology, node: str) -> StatusSnapshot:
    run_dir = topology.bind_source(node, RUN)
    assert run_dir is not None
    answer = query(run_dir / "status.sock", {"op": "status"}, timeout=5.0)
    snapshot = answer["status"]
    assert isinstance(snapshot, dict)
    return snapshot_from_json(snapshot)


def set_apiserver(topology: Topology, node: str, state: str) -> None:
    run_dir = topology.bind_source(node, RUN)
    assert run_dir is not None
    control_request(run_dir / "lab-apiserver.sock", {"op": "set", "state": state})


def serving(fib: Fib) -> dict[int, frozenset[IPAddress]]:
    return {vip.version: fib.nexthops(vip) for vip in VIPS}


def gateways(*nodes: str) -> dict[int, frozenset[IPAddress]]:
    return {v: frozenset(GATEWAYS[node][v] for node in nodes) for v in (4, 6)}


def hold_nothing_announced(topology: Topology, fib: Fib, seconds: float) -> None:
    """r1 has no VIP route and no prefix from anyone for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert serving(fib) == gateways(), f"r1 routes a VIP: {serving(fib)}"
        time.sleep(0.02)
    peers = frr.bgp_peers(topology.netns("r1"))
    assert len(peers) == 6
    assert {p.state for p in peers} == {"Established"}
    assert [p.prefixes_received for p in peers] == [0] * 6


def start_reach_watch(topology: Topology, timeout: float) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", topology.netns("client"), sys.executable, "-c", REACH,
            str(timeout), *(str(vip.network_address) for vip in VIPS)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def reached_at(watch: subprocess.Popen[str], timeout: float) -> dict[str, float]:
    out, _ = watch.communicate(timeout=timeout + 10)
    return {vip: float(at) for vip, at in (line.split() for line in out.splitlines())}


def wait_serving(
    fib: Fib,
    expected: dict[int, frozenset[IPAddress]],
    timeout: float,
    *,
    start: float,
    keep: str | None = None,
) -> float:
    """Seconds from `start` until r1 routes both VIPs to exactly `expected`; `keep` must stay a
    nexthop of both all along."""
    while True:
        now = time.monotonic()
        found = serving(fib)
        if keep is not None:
            assert all(GATEWAYS[keep][v] in hops for v, hops in found.items()), (
                f"{keep} left r1's FIB: {found}"
            )
        if found == expected:
            return now - start
        assert now - start <= timeout, f"r1's FIB {found} after {timeout:g} s, not {expected}"
        time.sleep(0.002)


@pytest.mark.netns
@pytest.mark.timeout(180)
def test_a_cold_start_is_bootstrapped_through_the_vip(cold_lab: Topology) -> None:
    topology = cold_lab
    settings = node_config(topology, "cp2").apiserver
    bound = settings.rise * settings.interval + settings.min_healthy + MARGIN
    # A joining node's streak starts at its first successful probe, at most one interval
    # after its first 200; UP comes `min_healthy` later at the earliest.
    join_floor = max(settings.min_healthy, (settings.rise - 1) * settings.interval)
    for node in CPS:
        snapshot = status(topology, node)
        assert (snapshot.announced, snapshot.health) == (False, Health.DOWN)
        assert snapshot.last_probe is not None and snapshot.last_probe.reason == "refused"
        assert {n.state for n in snapshot.neighbors} == {"up"}

    with Fib(topology.netns("r1")) as fib:
        hold_nothing_announced(topology, fib, 1.0)
        # The apiserver process runs but its post-start hooks have not finished: 500.
        set_apiserver(topology, "cp2", "starting")
        hold_nothing_announced(topology, fib, bound)
        starting = status(topology, "cp2")
        assert starting.health is Health.DOWN and starting.last_probe is not None
        assert starting.last_probe.reason.startswith("http 500: poststarthook/")

        watch = start_reach_watch(topology, COLD_BOUND + 10)
        first_200 = time.monotonic()
        set_apiserver(topology, "cp2", "ready")
        in_fib = wait_serving(fib, gateways("cp2"), COLD_BOUND + 5, start=first_200)
        reached = reached_at(watch, COLD_BOUND + 10)
        assert serving(fib) == gateways("cp2")  # only the node that is ready
        took = {vip: at - first_200 for vip, at in reached.items()}
        print("cold start: cp2's first 200 -> VIP reachable from the client in "
              + ", ".join(f"{vip} {t:.3f} s" for vip, t in took.items())
              + f" (r1's FIB at {in_fib:.3f} s; bound {COLD_BOUND:g} s)")  # fmt: skip
        assert set(reached) == {str(vip.network_address) for vip in VIPS}
        assert all(t <= COLD_BOUND for t in took.values()), took
        assert [t.new for t in status(topology, "cp2").transitions] == ["up"]

        joined: dict[str, float] = {}
        for node in ("cp1", "cp3"):
            set_apiserver(topology, node, "starting")
        for node in ("cp1", "cp3"):
            start = time.monotonic()
            set_apiserver(topology, node, "ready")
            members = ("cp2", *joined, node)
            joined[node] = wait_serving(fib, gateways(*members), bound, keep="cp2", start=start)
        print("joins: " + ", ".join(f"{n} in r1's ECMP set {t:.3f} s after its first 200"
                                    for n, t in joined.items())
              + f" (others serve: rise and min_healthy, at least {join_floor:g} s)")  # fmt: skip
        assert serving(fib) == gateways(*CPS)
        for node in ("cp1", "cp3"):
            assert joined[node] >= join_floor, joined
            assert [t.new for t in status(topology, node).transitions][-2:] == ["rising", "up"]

    with LiveLab(topology) as live:
        sample = live.sample()
    print(f"client: {sample.total} new connections, answered by {dict(sample.answers)}")
    assert sample.failures == ()
    assert set(sample.answers) <= set(CPS) and len(sample.answers) >= 2
    for node in CPS:
        assert status(topology, node).announced


def test_the_node_starts_its_apiserver_in_the_state_it_is_given() -> None:
    from announcer.lab.node import apiserver_child

    assert apiserver_child("cp1", state="stopped").argv[-2:] == ("--state", "stopped")
    assert "--state" not in apiserver_child("cp1").argv


def test_lab_up_says_it_can_start_apiservers_stopped() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "announcer", "lab", "up", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "--apiserver-state" in result.stdout
    assert "stopped" in result.stdout

"""Interoperability of announcer's BFD with FRR's bfdd, in two network namespaces.

    bfd-test-<tag>-r  FRR zebra + bfdd    192.0.2.1/30 2001:db8:bfd::1/64  lo 10.255.0.1 fd00:255::1
        | veth
    bfd-test-<tag>-n  this test's service 192.0.2.2/30 2001:db8:bfd::2/64  lo 10.255.0.2 fd00:255::2

Four sessions at FRR's and announcer's defaults (300 ms x 3): single-hop over the link (RFC
5881) and multihop between the loopbacks (RFC 5883), each over IPv4 and IPv6. The test thread
enters the node's namespace (setns) while the service runs, so its sockets live there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest

from announcer.bfd import BfdService, Diag, Profile, SessionKey, State, StateChange
from announcer.lab.netns import inside

pytestmark = pytest.mark.netns

FRR = Path("/usr/lib/frr")
DEADLINE = 15.0
PROFILE = Profile()  # 300 ms x 3, as FRR's default
DETECT = 0.9
INTERVAL = 0.3
# Detection fires between one interval (the last packet came just before the fault) and one
# detection time after the fault; the slack is for a loaded machine.
EARLIEST, LATEST = DETECT - INTERVAL - 0.05, DETECT + 0.35
LINK = {4: ("192.0.2.1", "192.0.2.2", 30), 6: ("2001:db8:bfd::1", "2001:db8:bfd::2", 64)}
LOOP = {4: ("10.255.0.1", "10.255.0.2", 32), 6: ("fd00:255::1", "fd00:255::2", 128)}
SINGLE = [SessionKey(ip_address(LINK[v][0]), ip_address(LINK[v][1])) for v in (4, 6)]
MULTI = [SessionKey(ip_address(LOOP[v][0]), ip_address(LOOP[v][1]), multihop=True) for v in (4, 6)]
KEYS = SINGLE + MULTI


def frr_config(interface: str) -> str:
    lines = ["frr defaults traditional", "hostname bfd-test-router", "bfd"]
    for version in (4, 6):
        router, node, _ = LINK[version]
        lines += [f" peer {node} local-address {router} interface {interface}", " exit"]
        router, node, _ = LOOP[version]
        lines += [f" peer {node} multihop local-address {router}", " exit"]
    return "\n".join([*lines, "exit", ""])


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, FRR, iptables)"
    if not (FRR / "bfdd").exists() or not shutil.which("vtysh") or not shutil.which("iptables"):
        return "needs Debian's frr (/usr/lib/frr/bfdd) and iptables"
    return None


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass
class Lab:
    router: str
    node: str
    directory: Path
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(f"/var/run/frr/{self.router}")

    def frr_peers(self) -> dict[tuple[str, bool], dict[str, object]]:
        """FRR's `show bfd peers json`, by (peer address, multihop)."""
        out = run("vtysh", "-N", self.router, "-c", "show bfd peers json")
        return {(str(p["peer"]), bool(p["multihop"])): p for p in json.loads(out)}

    def start_bfdd(self) -> None:
        for name in ("zebra", "bfdd"):
            if name in self.daemons and self.daemons[name].poll() is None:
                continue
            config = self.directory / f"{name}.conf"
            argv = [str(FRR / name), "-N", self.router, "-f", str(config), "-P", "0"]
            argv += ["-i", str(self.run_dir / f"{name}.pid"), "--log", "stdout"]
            if name == "bfdd":
                argv += ["--bfdctl", str(self.run_dir / "bfdd.sock")]
            with (self.directory / f"{name}.log").open("ab") as log:
                self.daemons[name] = subprocess.Popen(
                    ["ip", "netns", "exec", self.router, *argv], stdout=log, stderr=log
                )
            vty = self.run_dir / f"{name}.vty"
            wait_until(lambda vty=vty: vty.is_socket(), f"{name} to start")  # type: ignore[misc]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"waited {DEADLINE} s for {what}"
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = missing()
    if reason is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but this test {reason}")
        pytest.skip(reason)
    tag = secrets.token_hex(2)
    lab = Lab(f"bfd-test-{tag}-r", f"bfd-test-{tag}-n", Path(f"/tmp/bfd-test-{tag}"))
    try:
        lab.directory.mkdir(mode=0o755)
        make_namespaces(lab.router, lab.node)
        lab.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(lab.run_dir, "frr", "frr")
        (lab.directory / "zebra.conf").write_text("hostname bfd-test-router\n")
        (lab.directory / "bfdd.conf").write_text(frr_config(lab.router))
        for name in ("zebra", "bfdd"):
            (lab.directory / f"{name}.conf").chmod(0o644)
        lab.start_bfdd()
        yield lab
    finally:
        for process in lab.daemons.values():
            stop(process)
        for namespace in (lab.router, lab.node):
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        shutil.rmtree(lab.run_dir, ignore_errors=True)
        shutil.rmtree(lab.directory, ignore_errors=True)


def make_namespaces(router: str, node: str) -> None:
    for namespace in (router, node):
        run("ip", "netns", "add", namespace)
        run("ip", "-n", namespace, "link", "set", "lo", "up")
    run("ip", "link", "add", router, "netns", router, "type", "veth", "peer", node, "netns", node)
    for namespace, index, other in ((router, 0, 1), (node, 1, 0)):
        for version in (4, 6):
            address, length = LINK[version][index], LINK[version][2]
            run("ip", "-n", namespace, "addr", "add", f"{address}/{length}", "dev", namespace,
                *(["nodad"] if version == 6 else []))  # fmt: skip
            loop = LOOP[version]
            run("ip", "-n", namespace, "addr", "add", f"{loop[index]}/{loop[2]}", "dev", "lo")
        run("ip", "-n", namespace, "link", "set", namespace, "up")
        for version in (4, 6):
            via = LINK[version][other]
            run("ip", f"-{version}", "-n", namespace, "route", "add", LOOP[version][other],
                "via", via)  # fmt: skip


class Node:
    """The service plus a timestamped record of its state changes."""

    def __init__(self, service: BfdService) -> None:
        self.service = service
        self.changes: list[tuple[float, SessionKey, StateChange]] = []

    def record(self, key: SessionKey, change: StateChange) -> None:
        self.changes.append((asyncio.get_running_loop().time(), key, change))

    def states(self) -> dict[SessionKey, State]:
        return {status.key: status.state for status in self.service.status()}

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE):
                while not condition():  # noqa: ASYNC110 - nothing to wait on but the state
                    await asyncio.sleep(0.01)
        except TimeoutError:
            pytest.fail(f"waited {DEADLINE} s for {what}: {self.states()}")

    def went_down(self, key: SessionKey, since: float) -> tuple[float, Diag] | None:
        for at, changed, change in self.changes:
            if changed == key and at >= since and change.new is State.DOWN:
                return at, change.diag
        return None


@contextlib.asynccontextmanager
async def node_up(lab: Lab) -> Iterator[Node]:  # type: ignore[misc]
    holder: list[Node] = []
    service = BfdService(on_change=lambda key, change: holder[0].record(key, change))
    node = Node(service)
    holder.append(node)
    async with service:
        for key in KEYS:
            service.add(key, PROFILE)
        await node.until(lambda: all(s is State.UP for s in node.states().values()), "all Up")
        yield node


async def shell(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, f"{argv}: {stderr.decode()}"


def in_netns(lab: Lab, test: Callable[[Lab], object]) -> None:
    with inside(lab.node):
        asyncio.run(test(lab))  # type: ignore[arg-type]


def test_sessions_come_up_with_frr_v4_v6_single_hop_and_multihop(lab: Lab) -> None:
    async def scenario(lab: Lab) -> None:
        async with node_up(lab) as node:
            await node.until(lambda: all(s.transmit_interval < 0.5 for s in node.service.status()),
                             "the fast rate after Poll/Final")  # fmt: skip
            peers = await asyncio.to_thread(lab.frr_peers)
            ours = {status.key: status for status in node.service.status()}
            for key in KEYS:
                peer = peers[str(key.local), key.multihop]
                assert peer["status"] == "up", peer
                assert peer["remote-id"] == ours[key].discriminator
                assert peer["id"] == ours[key].remote_discriminator
                assert peer["remote-detect-multiplier"] == 3
            for status in node.service.status():
                assert status.detection_time == pytest.approx(DETECT)
            # An observation window, not a synchronisation: the sessions stay Up on both sides.
            await asyncio.sleep(3 * DETECT)
            assert [c for _, _, c in node.changes if c.new is not State.UP] == []
            peers = await asyncio.to_thread(lab.frr_peers)
            assert all(peer["status"] == "up" for peer in peers.values())
            assert node.service.drops == {}
            assert node.service.send_errors == 0

    in_netns(lab, scenario)


async def drop_single_hop(lab: Lab, chain: str, *, drop: bool) -> None:
    """Add (or delete) a DROP of UDP 3784 to the router's `chain`, IPv4 and IPv6."""
    for program in ("iptables", "ip6tables"):
        rule = [chain, "-p", "udp", "--dport", "3784", "-j", "DROP"]
        await shell("ip", "netns", "exec", lab.router, program, "-A" if drop else "-D", *rule)


def test_dropped_single_hop_packets_are_detected_in_time(lab: Lab) -> None:
    async def scenario(lab: Lab) -> None:
        async with node_up(lab) as node:
            loop = asyncio.get_running_loop()
            await drop_single_hop(lab, "OUTPUT", drop=True)
            fault = loop.time()
            try:
                await node.until(
                    lambda: all(node.went_down(key, fault) for key in SINGLE), "single-hop Down"
                )
            finally:
                await drop_single_hop(lab, "OUTPUT", drop=False)
            for key in SINGLE:
                found = node.went_down(key, fault)
                assert found is not None
                at, diag = found
                assert diag is Diag.DETECTION_EXPIRED
                print(f"{key}: Down after {at - fault:.3f} s")  # the figure, with -s
                assert EARLIEST <= at - fault <= LATEST, f"{key}: down after {at - fault:.3f} s"
            # The multihop sessions (UDP 4784) were not touched.
            assert all(node.went_down(key, fault) is None for key in MULTI)
            assert all(node.states()[key] is State.UP for key in MULTI)
            # With the packets flowing again, the sessions come back.
            await node.until(lambda: all(s is State.UP for s in node.states().values()), "Up")

    in_netns(lab, scenario)


def test_frr_sees_the_node_go_silent(lab: Lab) -> None:
    async def scenario(lab: Lab) -> None:
        async with node_up(lab) as node:
            await node.until(lambda: all(s.transmit_interval < 0.5 for s in node.service.status()),
                             "the fast rate")  # fmt: skip
            await drop_single_hop(lab, "INPUT", drop=True)
            try:
                loop_deadline = asyncio.get_running_loop().time() + DEADLINE
                while True:
                    peers = await asyncio.to_thread(lab.frr_peers)
                    single = [peers[str(key.local), False] for key in SINGLE]
                    if all(p["status"] == "down" for p in single):
                        break
                    assert asyncio.get_running_loop().time() < loop_deadline, single
                    await asyncio.sleep(0.05)
                assert all(p["diagnostic"] == "control detection time expired" for p in single)
                assert all(peers[str(k.local), True]["status"] == "up" for k in MULTI)
            finally:
                await drop_single_hop(lab, "INPUT", drop=False)

    in_netns(lab, scenario)


def test_a_dead_bfdd_is_detected_in_time(lab: Lab) -> None:
    async def scenario(lab: Lab) -> None:
        async with node_up(lab) as node:
            loop = asyncio.get_running_loop()
            await node.until(lambda: all(s.transmit_interval < 0.5 for s in node.service.status()),
                             "the fast rate")  # fmt: skip
            lab.daemons["bfdd"].send_signal(signal.SIGKILL)
            fault = loop.time()
            await node.until(lambda: all(node.went_down(key, fault) for key in KEYS), "all Down")
            for key in KEYS:
                found = node.went_down(key, fault)
                assert found is not None
                at, diag = found
                assert diag is Diag.DETECTION_EXPIRED
                print(f"{key}: Down after {at - fault:.3f} s")  # the figure, with -s
                assert EARLIEST <= at - fault <= LATEST, f"{key}: down after {at - fault:.3f} s"
        await asyncio.to_thread(lab.daemons["bfdd"].wait)
        await asyncio.to_thread(lab.start_bfdd)

    in_netns(lab, scenario)

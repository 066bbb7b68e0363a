"""The dual-homed lab (containerlab/dual-homed.clab.yml) realised with network namespaces and
host FRR: every node's BGP sessions establish on both leaves, the leaves install every node's
path to the VIPs, the spine spreads them over both leaves, and the spine-leaf BFD sessions run
in the leaves' and the spine's bfdd, and every node's daemon runs BFD with both leaves (its
configuration enables it). Then a node whose BFD falls silent (its packets dropped on the way
out) leaves both leaves' FIBs within the BFD time.

The realiser's own convergence check knows a single router (the simple lab's r1); this test
supplies the dual-homed one (all routers' sessions Established) and then checks the FIBs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest

from announcer.lab import frr, realiser
from announcer.lab.fib import Fib
from announcer.lab.topology import Topology, load_topology

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parents[2] / "containerlab" / "dual-homed.clab.yml"
LAB_NAME = "dual-homed-test"  # beside a `dual-homed` lab someone may have up
VIPS = [ip_network("198.51.100.10/32"), ip_network("2001:db8:100::10/128")]
LEAF_NEXTHOPS = {
    "leaf1": {4: ["192.0.2.2", "192.0.2.6", "192.0.2.10"],
              6: ["2001:db8:11::2", "2001:db8:12::2", "2001:db8:13::2"]},
    "leaf2": {4: ["192.0.2.18", "192.0.2.22", "192.0.2.26"],
              6: ["2001:db8:21::2", "2001:db8:22::2", "2001:db8:23::2"]},
    # FRR sends FRR its link-local next hop too, and that is the one the spine installs.
    "spine": {4: ["192.0.2.34", "192.0.2.38"], 6: []},
}  # fmt: skip
DEADLINE = 60.0
IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def quiet(_: str) -> None:
    pass


def all_routers_converged(topology: Topology) -> realiser.Convergence:
    """Every router's BGP sessions (the FIBs are checked by the test itself)."""
    peers = [
        peer
        for router in realiser.nodes_with_role(topology, realiser.ROUTER)
        for peer in frr.bgp_peers(topology.netns(router))
    ]
    # 2 x 6 node sessions on the leaves, 2 x 2 leaf-spine sessions on each side.
    return realiser.Convergence(
        established=sum(peer.state == "Established" for peer in peers),
        peers=len(peers),
        nexthops={},
        expected_nexthops=0,
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[Topology]:
    if os.geteuid() != 0 or frr.missing_binaries(("zebra", "bgpd", "bfdd")):
        pytest.skip("needs root and Debian's frr (zebra, bgpd, bfdd)")
    environ = {**os.environ, "ANNOUNCER_LAB_NAME": LAB_NAME}
    topology = load_topology(TOPOLOGY, environ=environ)
    patch = pytest.MonkeyPatch()
    patch.setattr(realiser, "convergence", all_routers_converged)
    try:
        realiser.down(topology, say=quiet)
        realiser.up(topology, say=quiet)
        yield topology
    finally:
        realiser.down(topology, say=quiet)
        patch.undo()


def poll(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"waited {DEADLINE} s for {what}"
        time.sleep(0.1)


def test_every_router_session_is_established(lab: Topology) -> None:
    converged = all_routers_converged(lab)
    assert (converged.established, converged.peers) == (20, 20)


def test_every_node_peers_with_both_leaves(lab: Topology) -> None:
    for leaf in ("leaf1", "leaf2"):
        peers = frr.bgp_peers(lab.netns(leaf))
        nodes = {p.address for p in peers if p.address not in LEAF_NEXTHOPS["spine"][4]}
        expected = set(LEAF_NEXTHOPS[leaf][4] + LEAF_NEXTHOPS[leaf][6])
        assert nodes >= expected
        assert all(p.state == "Established" for p in peers), peers


@pytest.mark.parametrize("router", ["leaf1", "leaf2", "spine"])
def test_the_routers_install_every_path(lab: Topology, router: str) -> None:
    expected = {vip: {ip_address(a) for a in LEAF_NEXTHOPS[router][vip.version]} for vip in VIPS}

    def fits(vip: IPNetwork, found: frozenset[IPAddress]) -> bool:
        if expected[vip]:
            return found == expected[vip]
        return len(found) == 2 and all(address.is_link_local for address in found)

    def installed() -> bool:
        with Fib(lab.netns(router)) as fib:
            return all(fits(vip, fib.nexthops(vip)) for vip in VIPS)

    poll(installed, f"{router}'s ECMP routes to the VIPs")


def test_spine_and_leaves_run_bfd(lab: Topology) -> None:
    def spine_sessions_up() -> bool:
        peers = frr.bfd_peers(lab.netns("spine"))
        return len(peers) == 4 and all(peer.status == "up" for peer in peers)

    poll(spine_sessions_up, "the spine's four BFD sessions (leaves, IPv4 and IPv6)")

    def leaf_sessions_up() -> bool:
        # Six sessions toward the nodes (each node's daemon runs BFD) and two to the spine.
        peers = frr.bfd_peers(lab.netns("leaf1"))
        return len(peers) == 8 and all(peer.status == "up" for peer in peers)

    poll(leaf_sessions_up, "leaf1's eight BFD sessions (the nodes' daemons, the spine)")


# cp1's four BGP neighbors, as (leaf, leaf's address, cp1's address); and leaf -> cp1's path.
CP1_SESSIONS = [
    ("leaf1", "192.0.2.1", "192.0.2.2"),
    ("leaf1", "2001:db8:11::1", "2001:db8:11::2"),
    ("leaf2", "192.0.2.17", "192.0.2.18"),
    ("leaf2", "2001:db8:21::1", "2001:db8:21::2"),
]
CP1_PATH = {"leaf1": ip_address("192.0.2.2"), "leaf2": ip_address("192.0.2.18")}
# Detection (0.9 s at 300 ms x 3) plus FRR's BGP teardown and the FIB update, on a busy host.
WITHDRAWN_WITHIN = 1.5


def cp1_bfd_up(lab: Topology) -> bool:
    up = {
        peer.address
        for leaf in ("leaf1", "leaf2")
        for peer in frr.bfd_peers(lab.netns(leaf))
        if peer.status == "up"
    }
    return {node for _, _, node in CP1_SESSIONS} <= up


def cp1_paths(lab: Topology) -> dict[str, bool]:
    """Whether each leaf still has cp1's path to the IPv4 VIP in its FIB."""
    result = {}
    for leaf, address in CP1_PATH.items():
        with Fib(lab.netns(leaf)) as fib:
            result[leaf] = address in fib.nexthops(VIPS[0])
    return result


def test_the_leaves_withdraw_a_node_whose_bfd_falls_silent(lab: Topology) -> None:
    """cp1's daemon's BFD against the leaves' `neighbor X bfd`: the sessions are up; when
    cp1's BFD packets stop (dropped on the way out), both leaves take cp1's path out of their
    FIB within the BFD time, not the 90 s hold time."""
    cp1 = lab.netns("cp1")
    drop = ["udp", "--dport", "3784", "-j", "DROP"]
    iptables = [("iptables", "OUTPUT", "-p", *drop), ("ip6tables", "OUTPUT", "-p", *drop)]

    async def scenario() -> float:
        await asyncio.to_thread(poll, lambda: cp1_bfd_up(lab), "the leaves' BFD to cp1")
        await asyncio.to_thread(poll, lambda: all(cp1_paths(lab).values()), "cp1's paths")
        for program, chain, *rule in iptables:
            await run("ip", "netns", "exec", cp1, program, "-A", chain, *rule)
        fault = time.monotonic()
        try:
            await asyncio.to_thread(
                poll, lambda: not any(cp1_paths(lab).values()), "cp1 out of both FIBs"
            )
            return time.monotonic() - fault
        finally:
            for program, chain, *rule in iptables:
                await run("ip", "netns", "exec", cp1, program, "-D", chain, *rule)

    elapsed = asyncio.run(scenario())
    print(f"cp1 out of both leaves' FIBs {elapsed:.3f} s after its BFD packets stopped")
    assert elapsed <= WITHDRAWN_WITHIN


async def run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, f"{argv}: {stderr.decode()}"

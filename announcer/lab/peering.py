"""Whether a lab router's BFD and BGP sessions are up, as its FRR reports them (vtysh).

Every answer is False while the router's daemons start (their vty is not there yet).
It must not change anything on the router nor wait: callers poll.
"""

from __future__ import annotations

from announcer.lab import frr
from announcer.lab.netns import LabError
from announcer.lab.topology import Topology
from announcer.lab.watch import interface_addresses

__all__ = ["bfd_up", "bgp_sessions", "bgp_up"]


def _addresses(topology: Topology, peer: str) -> set[str]:
    return {str(a) for a in interface_addresses(topology.netns(peer))}


def bfd_up(topology: Topology, router: str, peer: str) -> bool:
    """Whether `router`'s bfdd has every session with router `peer` up."""
    try:
        sessions = frr.bfd_peers(topology.netns(router))
    except LabError:
        return False
    addresses = _addresses(topology, peer)
    wanted = [s for s in sessions if s.address in addresses]
    return bool(wanted) and all(s.status == "up" for s in wanted)


def bgp_up(topology: Topology, router: str, peer: str | None = None) -> bool:
    """Whether every BGP session of `router` (with router `peer` only, if given) is
    Established."""
    if peer is not None:
        peers = bgp_sessions(topology, router, peer)
    else:
        try:
            peers = frr.bgp_peers(topology.netns(router))
        except LabError:
            return False
    return bool(peers) and all(p.state == "Established" for p in peers)


def bgp_sessions(topology: Topology, router: str, peer: str) -> list[frr.Peer]:
    """`router`'s BGP sessions with router `peer`, one per address family (none while its
    bgpd starts)."""
    try:
        peers = frr.bgp_peers(topology.netns(router))
    except LabError:
        return []
    addresses = _addresses(topology, peer)
    return [p for p in peers if p.address in addresses]

"""The fault matrix's rows for the dual-homed lab (two leaves with BFD, a spine): `DUAL_FAULTS`,
which `announcer lab faults` (and the soak) run after `matrix.FAULTS` on a lab with several
edge routers only.

- `uplink cut`: one node's link to leaf1 drops everything, silently. Only leaf1's path to that
  node may go (within the leaves' BFD time), leaf2's stays. The leaves' BFD session to the
  node only ever comes up when the node's daemon runs BFD, so the row needs it (`needs_bfd`:
  the runner skips it while the node's status has no `bfd` member);
- `leaf1 fails`: leaf1's links fall silent (everything dropped, no carrier loss) and its FRR
  daemons are killed: the spine stops using leaf1 within its BFD time, every node stays in
  leaf2's FIB and the spine always has a path;
- `leaf1's bfdd restarted`: the spine always has a path to the VIPs, every node stays in
  leaf2's FIB, and leaf1's BFD sessions with the spine come back.

While a row runs, the nodes may be out of leaf1 (the checker's "in" is every leaf), so they
are `free` there; what must hold is checked on each router's own watcher.
It must not run faults (`runner`) nor inject anything itself (`faults`).
"""

from __future__ import annotations

from collections.abc import Callable

from announcer.lab import faults, frr, matrix, timeline
from announcer.lab.bounds import GAP, MARGIN, SESSION_BACK
from announcer.lab.fib import IPAddress
from announcer.lab.netns import LabError
from announcer.lab.patterns import DUAL_HOMED, Fault, Run, back, now, wait_for
from announcer.lab.trial import Finding, Trial, timed
from announcer.lab.watch import FibWatcher, interface_addresses
from announcer.lab.watchset import RouterWatch

LEAF, OTHER, SPINE = "leaf1", "leaf2", "spine"
# The spine's and leaves' FRR profile (containerlab/dual-homed-*/frr.conf): 300 ms x 3.
ROUTER_BFD = 0.3 * 3
LEAF_BACK = 40.0  # leaf1 up again: zebra, bgpd, bfdd start, then every session
OBSERVED = 3.0  # how long a row watches what must not move


DUAL_FAULTS: list[Fault] = []


def fault(name: str, expected: str, node: str = "cp1", **kind: bool) -> Callable[[Run], Run]:
    return matrix.fault(name, expected, node, network=DUAL_HOMED, into=DUAL_FAULTS, **kind)


def router_watcher(t: Trial, router: str) -> FibWatcher:
    if not isinstance(t.watcher, RouterWatch):
        raise faults.FaultError(f"{t.topology.name} has no router {router} to watch alone")
    return t.watcher.watcher(router)


def steps(t: Trial, router: str, gateways: frozenset[IPAddress]) -> list[timeline.Step]:
    watcher = router_watcher(t, router)
    return timeline.presence(watcher.histories(), gateways)


def gone(t: Trial, router: str, gateways: frozenset[IPAddress]) -> bool:
    """Whether `router` routes no VIP through `gateways`, right now."""
    return not timeline.value(steps(t, router, gateways), timeline.ANY, float("inf"))


def left_each(
    t: Trial, router: str, gateways: frozenset[IPAddress], since: float, what: str, bound: float
) -> list[Finding]:
    """Per VIP: seconds from `since` until `router` no longer routed it through `gateways`."""
    watcher = router_watcher(t, router)
    found = []
    for vip in t.vips:
        steps = timeline.presence([watcher.history(vip)], gateways)
        at = timeline.first(steps, timeline.ANY, False, since)
        found.append(timed(f"{what} for {vip}", None if at is None else at - since, bound))
    return found


def never_without(t: Trial, router: str, gateways: frozenset[IPAddress], since: float) -> Finding:
    """`router` had a path via `gateways` for every VIP all along since `since` (absences up
    to the router's own replace gap aside)."""
    found = timeline.runs(steps(t, router, gateways), timeline.ALL, False, since, now())
    lost = [a - since for a, b in found if b - a > GAP]
    text = f"{router} lost it at +{lost[0]:.2f} s" if lost else f"{router} kept it"
    return Finding(text, not lost)


def leaf_gateways(t: Trial, router: str) -> frozenset[IPAddress]:
    """Every address of `router`'s links, link-local too: what the spine routes through."""
    return interface_addresses(t.topology.netns(router), link_local=True)


def bfd_up(t: Trial, router: str, peer: str) -> bool:
    """Whether `router`'s bfdd has every session with router `peer` up (False while it
    starts)."""
    try:
        sessions = frr.bfd_peers(t.topology.netns(router))
    except LabError:  # its vty not there yet
        return False
    addresses = {str(a) for a in interface_addresses(t.topology.netns(peer))}
    wanted = [s for s in sessions if s.address in addresses]
    return bool(wanted) and all(s.status == "up" for s in wanted)


def seen_from(t: Trial, router: str, peer: str) -> str:
    """`router`'s BFD and BGP sessions with router `peer`, in a few words."""
    addresses = {str(a) for a in interface_addresses(t.topology.netns(peer))}
    try:
        bfd = [f"{s.status}/{s.diagnostic}" for s in frr.bfd_peers(t.topology.netns(router))
               if s.address in addresses]  # fmt: skip
        bgp = [p.state for p in frr.bgp_peers(t.topology.netns(router)) if p.address in addresses]
    except LabError as exc:
        return f"{router}'s view unreadable: {exc}"
    return f"{router}'s BFD with {peer}: {', '.join(bfd)}; BGP: {', '.join(bgp)}"


def bfd_before(t: Trial, router: str, peer: str) -> Finding:
    """The BFD this fault relies on is up before it is injected (a lab just up may not be)."""
    took = wait_for(lambda: bfd_up(t, router, peer), LEAF_BACK)
    return timed(f"{router}'s BFD with {peer} up before", took, LEAF_BACK)


def free_all(t: Trial, why: str) -> float:
    t0 = now()
    for node in t.nodes:
        t.check.free(node, at=t0, why=why)
    return t0


@fault(
    "uplink cut (node to leaf1)",
    "out of leaf1 <= BFD + 0.5 s, stays in leaf2, back <= {session:.2f} s",
    "cp3",
    needs_bfd=True,
)
def uplink_cut(t: Trial, node: str) -> list[Finding]:
    bfd = max(
        n.bfd.receive_interval * n.bfd.detect_multiplier for n in t.configs[node].bgp.neighbors
    )
    bound = bfd + MARGIN
    mine = t.gateways[node]
    before = bfd_before(t, LEAF, node)
    t0 = free_all(t, "uplink cut")
    faults.drop_link(t.topology, node)
    t.watcher.wait(lambda: gone(t, LEAF, mine), bound + 2.0)
    found = [before, *left_each(t, LEAF, mine, t0, f"{node} out of {LEAF}", bound)]
    found.append(Finding(seen_from(t, LEAF, node), True))  # what explains the timing
    found.append(never_without(t, OTHER, mine, t0))
    undo = lambda: faults.drop_link(t.topology, node, undo=True)  # noqa: E731
    return [*found, back(t, node, undo, SESSION_BACK)]


@fault(
    "leaf1 fails (links silent, daemons killed)",
    f"spine off leaf1 <= {ROUTER_BFD + MARGIN:.1f} s (BFD), every node stays in leaf2",
    shared=True,
)
def leaf_failure(t: Trial, node: str) -> list[Finding]:
    bound = ROUTER_BFD + MARGIN
    leaf, other = leaf_gateways(t, LEAF), leaf_gateways(t, OTHER)
    found = [bfd_before(t, SPINE, LEAF)]
    t0 = free_all(t, "leaf1 fails")
    faults.router_down(t.topology, LEAF)
    t.watcher.wait(lambda: gone(t, SPINE, leaf), bound + 2.0)
    found += left_each(t, SPINE, leaf, t0, f"{SPINE} off {LEAF}", bound)
    found.append(Finding(seen_from(t, SPINE, LEAF), True))  # what explains the timing
    t.watcher.wait(lambda: False, OBSERVED)
    found.append(never_without(t, SPINE, other, t0))
    found += [never_without(t, OTHER, t.gateways[each], t0) for each in t.nodes]
    # Until leaf1's sessions are back its FIB changes by nature: zebra starts by clearing the
    # routes its killed predecessor left, then BGP fills it again. The nodes stay free.
    t1 = now()
    faults.router_up(t.topology, LEAF)
    back_up = wait_for(lambda: sessions_up(t, LEAF), LEAF_BACK) is not None
    found.append(timed(f"{LEAF}'s BGP sessions back", now() - t1 if back_up else None, LEAF_BACK))
    t2 = now()
    for each in t.nodes:
        t.check.rejoin(each, at=t2, within=SESSION_BACK, why=f"{LEAF} back")
    return [*found, *(t.until_in(each, t2, SESSION_BACK) for each in t.nodes)]


def sessions_up(t: Trial, router: str) -> bool:
    """Whether every BGP session of `router` is Established (False while bgpd starts)."""
    try:
        peers = frr.bgp_peers(t.topology.netns(router))
    except LabError:
        return False
    return bool(peers) and all(peer.state == "Established" for peer in peers)


@fault(
    "leaf1's bfdd restarted",
    "the spine always has a path, every node stays in leaf2, leaf1's BFD up again",
    shared=True,
)
def bfdd_restarted(t: Trial, node: str) -> list[Finding]:
    other = leaf_gateways(t, OTHER)
    found = [bfd_before(t, LEAF, SPINE)]
    t0 = free_all(t, "bfdd restart")
    faults.restart_frr_daemon(t.topology, LEAF, "bfdd")
    took = wait_for(lambda: bfd_up(t, LEAF, SPINE), SESSION_BACK)
    found.append(timed(f"{LEAF}'s BFD with the {SPINE} up again", took, SESSION_BACK))
    t.watcher.wait(lambda: False, OBSERVED)
    found.append(never_without(t, SPINE, other, t0))
    found += [never_without(t, OTHER, t.gateways[each], t0) for each in t.nodes]
    t1 = now()
    for each in t.nodes:
        t.check.rejoin(each, at=t1, within=SESSION_BACK, why="bfdd restarted")
    return [*found, *(t.until_in(each, t1, SESSION_BACK) for each in t.nodes)]

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
  leaf2's FIB, and leaf1's BFD sessions with the spine come back;
- `node power off`: every link of the node drops everything silently and its daemon, ExaBGP,
  relay and apiserver freeze: out of both leaves within BFD + `BFD_TO_FIB` (1.1 s at
  300 ms x 3), the other nodes stay, the spine keeps a path (its next hops are the leaves);
- `ExaBGP frozen`: the daemon's liveness check kills it: out of both leaves within
  `LIVENESS_OUT` (1.5 s), back once restarted (BFD stays up: it runs in the daemon);
- `daemon frozen`: its BFD falls silent: out of both leaves within BFD + `BFD_TO_FIB`, before
  the relay's heartbeat timeout (2 s) stops ExaBGP;
- `BFD dropped`: only UDP 3784 dropped on the node's uplink to leaf1, BGP's TCP passes: out of
  leaf1 within the BFD time, in leaf2 all along. FRR 8.4's bgpd then sets the session up
  again over TCP while BFD stays down, so leaf1 routes to the node again within seconds: the
  row says when, for the record;
- `BFD flap storm`: BFD on the node's uplink to leaf1 dropped and let through `STORM_FLAPS`
  times: every other BFD session in the daemons' status keeps its state and state-change
  count, leaf2's and the spine's FIBs do not change, the other nodes stay.

A row that takes a node out of leaf1 only makes it `free` (the checker's "in" is every leaf;
`uplink cut` and the leaf rows free every node); what must hold is checked on each router's
own watcher. The rows that take a node out of both leaves expect it to `leave` within the
row's bound, so the checker holds them to it too.
It must not run faults (`runner`) nor inject anything itself (`faults`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from announcer.lab import faults, frr, matrix, peering, timeline
from announcer.lab.bounds import GAP, MARGIN, SESSION_BACK
from announcer.lab.fib import IPAddress
from announcer.lab.netns import LabError
from announcer.lab.patterns import DUAL_HOMED, Fault, Run, back, now, restarts, wait_for
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
    took = wait_for(lambda: peering.bfd_up(t.topology, router, peer), LEAF_BACK)
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
    back_up = wait_for(lambda: peering.bgp_up(t.topology, LEAF), LEAF_BACK) is not None
    found.append(timed(f"{LEAF}'s BGP sessions back", now() - t1 if back_up else None, LEAF_BACK))
    t2 = now()
    for each in t.nodes:
        t.check.rejoin(each, at=t2, within=SESSION_BACK, why=f"{LEAF} back")
    return [*found, *(t.until_in(each, t2, SESSION_BACK) for each in t.nodes)]


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
    took = wait_for(lambda: peering.bfd_up(t.topology, LEAF, SPINE), SESSION_BACK)
    found.append(timed(f"{LEAF}'s BFD with the {SPINE} up again", took, SESSION_BACK))
    t.watcher.wait(lambda: False, OBSERVED)
    found.append(never_without(t, SPINE, other, t0))
    found += [never_without(t, OTHER, t.gateways[each], t0) for each in t.nodes]
    t1 = now()
    for each in t.nodes:
        t.check.rejoin(each, at=t1, within=SESSION_BACK, why="bfdd restarted")
    return [*found, *(t.until_in(each, t1, SESSION_BACK) for each in t.nodes)]


# ---- a silent node, a frozen process, BFD alone dropped -------------------------------------

# From the leaves' BFD declaring a node down to its path out of their FIBs (bfdd -> bgpd ->
# zebra -> kernel, about 0.1 s): the 1.1 s bound at 300 ms x 3 is the BFD time plus this.
BFD_TO_FIB = 0.2
# ExaBGP frozen: the daemon's liveness check kills it within INTERVAL + BOUND (1.3 s) of its
# last answer and the leaves see its sessions close at once: out within 1.5 s, whatever the
# liveness constants say.
LIVENESS_OUT = 1.5
STORM_FLAPS = 10
STORM_DROP, STORM_PASS = 1.2, 0.6  # seconds each flap drops BFD (> 0.9 s), then lets it pass


def bfd_time(t: Trial, node: str) -> float:
    """The longest BFD detection time between `node` and a leaf, from its configuration
    (each side's multiplier x the slower of the two directions' intervals)."""
    return max(
        max(n.bfd.transmit_interval, n.bfd.receive_interval) * n.bfd.detect_multiplier
        for n in t.configs[node].bgp.neighbors
    )


def others_stayed(t: Trial, node: str, since: float) -> Finding:
    """Every node but `node` stayed in both leaves' FIBs for every VIP since `since`."""
    others = [each for each in t.nodes if each != node]
    gone = [each for each in others if t.check.withdrawals(each, since, now())]
    text = f"withdrawn: {', '.join(gone)}" if gone else f"{', '.join(others)} stayed in"
    return Finding(text, not gone)


def out_of_leaves(t: Trial, node: str, t0: float, bound: float) -> list[Finding]:
    """Per leaf and VIP: seconds from `t0` until that leaf no longer routed it via `node`;
    for a late one, what the leaves' sessions with the node showed then."""
    mine = t.gateways[node]
    t.watcher.wait(lambda: gone(t, LEAF, mine) and gone(t, OTHER, mine), bound + 2.0)
    found = [
        f for leaf in (LEAF, OTHER) for f in left_each(t, leaf, mine, t0, f"out of {leaf}", bound)
    ]
    if not all(f.ok for f in found):
        found += [Finding(seen_from(t, leaf, node), True) for leaf in (LEAF, OTHER)]
    return found


def leaves_bfd_before(t: Trial, node: str) -> list[Finding]:
    return [bfd_before(t, leaf, node) for leaf in (LEAF, OTHER)]


@fault(
    "node power off (links silent, processes frozen)",
    f"out of both leaves <= BFD + {BFD_TO_FIB:g} s, others stay, the spine keeps a path; "
    "powered on: back <= {exabgp:.1f} s + backoff",
    needs_bfd=True,
)
def node_power_off(t: Trial, node: str) -> list[Finding]:
    bound = bfd_time(t, node) + BFD_TO_FIB
    leaves = leaf_gateways(t, LEAF) | leaf_gateways(t, OTHER)
    found = leaves_bfd_before(t, node)
    t0 = now()
    try:
        faults.power_off(t.topology, node)
        t.check.leave(node, at=t0, within=bound, why="power off")
        found += out_of_leaves(t, node, t0, bound)
        found += [others_stayed(t, node, t0), never_without(t, SPINE, leaves, t0)]
    finally:
        t.exabgp_exited(node, now())  # the relay, frozen with it, may stop it when it wakes
        found.append(back(t, node, lambda: faults.power_on(t.topology, node), t.exabgp_bound(node)))
    return found


@fault(
    "ExaBGP frozen (SIGSTOP)",
    f"killed by the daemon, out of both leaves <= {LIVENESS_OUT:.2f} s (liveness); "
    "back <= {exabgp:.1f} s + backoff, restarts +1",
    "cp2",
)
def exabgp_frozen(t: Trial, node: str) -> list[Finding]:
    before = restarts(t, node)
    t0 = now()
    pid = faults.send(t.topology, node, "exabgp", signal.SIGSTOP)
    t.check.leave(node, at=t0, within=LIVENESS_OUT, why="ExaBGP frozen")
    found = [t.until_out(node, t0, LIVENESS_OUT, "out of both leaves")]
    killed = faults.wait_gone(pid, max(0.0, t0 + LIVENESS_OUT - now()))
    found.append(Finding(f"frozen ExaBGP {'killed' if killed else 'still there'}", killed))
    t.exabgp_exited(node, now())
    left, bound = t.check.left_at(node, t0) or now(), t.exabgp_bound(node)
    t.check.rejoin(node, at=left, within=max(0.0, t0 + bound - left), why="ExaBGP restarted")
    t.until_in(node, left, bound)
    back_at = t.check.back_at(node, left)
    found.append(timed(f"{node} back", None if back_at is None else back_at - t0, bound))
    after = restarts(t, node)
    return [*found, Finding(f"restarts {before} -> {after}", after == before + 1)]


@fault(
    "daemon frozen (SIGSTOP: its BFD falls silent)",
    f"out of both leaves <= BFD + {BFD_TO_FIB:g} s, before the relay's heartbeat timeout; "
    "SIGCONT: back <= {exabgp:.1f} s + backoff",
    "cp3",
    needs_bfd=True,
)
def daemon_frozen(t: Trial, node: str) -> list[Finding]:
    bound = bfd_time(t, node) + BFD_TO_FIB
    found = leaves_bfd_before(t, node)
    t0 = now()
    faults.send(t.topology, node, "daemon", signal.SIGSTOP)
    try:
        t.check.leave(node, at=t0, within=bound, why="daemon frozen")
        found += out_of_leaves(t, node, t0, bound)
        found.append(others_stayed(t, node, t0))
    finally:
        t.exabgp_exited(node, now())  # the relay's dead-man switch may stop it meanwhile
        cont = lambda: faults.send(t.topology, node, "daemon", signal.SIGCONT)  # noqa: E731
        found.append(back(t, node, cont, t.exabgp_bound(node)))
    return found


def again_while(t: Trial, gateways: frozenset[IPAddress], since: float, what: str) -> Finding:
    """For the record: whether leaf1 routed through `gateways` again after it first stopped
    (FRR's bgpd sets its session up again over TCP while BFD is still down)."""
    found = steps(t, LEAF, gateways)
    out = timeline.first(found, timeline.ANY, False, since)
    again = None if out is None else timeline.first(found, timeline.ALL, True, out)
    if again is None:
        return Finding(f"out of {LEAF} until undone", True)
    return Finding(f"back in {LEAF} at +{again - since:.2f} s, {what} still", True)


@fault(
    "BFD dropped on the uplink to leaf1, BGP's packets pass",
    f"out of leaf1 <= BFD + {BFD_TO_FIB:g} s, stays in leaf2; restored: back <= {{session:.2f}} s",
    needs_bfd=True,
)
def bfd_dropped(t: Trial, node: str) -> list[Finding]:
    bound, mine = bfd_time(t, node) + BFD_TO_FIB, t.gateways[node]
    found = [bfd_before(t, LEAF, node)]
    t0 = now()
    t.check.free(node, at=t0, why="BFD dropped")
    try:
        faults.drop_bfd(t.topology, node)
        t.watcher.wait(lambda: gone(t, LEAF, mine), bound + 2.0)
        found += left_each(t, LEAF, mine, t0, f"{node} out of {LEAF}", bound)
        t.watcher.wait(lambda: False, OBSERVED)
        found += [again_while(t, mine, t0, "BFD dropped"), Finding(seen_from(t, LEAF, node), True)]
        found += [never_without(t, OTHER, mine, t0), others_stayed(t, node, t0)]
    finally:
        undo = lambda: faults.drop_bfd(t.topology, node, undo=True)  # noqa: E731
        found.append(back(t, node, undo, SESSION_BACK))
    return found


def steady(t: Trial, router: str, since: float) -> Finding:
    """`router`'s next hops for every VIP stayed what they were at `since` (changes undone
    within the router's own replace gap aside)."""
    watcher = router_watcher(t, router)
    moved = []
    for vip in t.vips:
        history = watcher.history(vip)
        earlier = [c.nexthops for c in history if c.at <= since]
        before = earlier[-1] if earlier else frozenset()
        later = [c for c in history if c.at > since]
        ends = [c.at for c in later[1:]] + [now()] * bool(later)
        moved += [c.at - since for c, end in zip(later, ends, strict=True)
                  if c.nexthops != before and end - c.at > GAP]  # fmt: skip
    text = (
        f"{router}'s FIB changed at +{min(moved):.2f} s" if moved else f"{router}'s FIB unchanged"
    )
    return Finding(text, not moved)


BfdRows = dict[tuple[str, str], tuple[str, object]]


def bfd_rows(t: Trial) -> BfdRows:
    """Every node's BFD sessions as its daemon's status shows them: (node, neighbor) ->
    (state, state changes so far)."""
    rows: BfdRows = {}
    for node in t.nodes:
        listed = t.status(node).get("bfd")
        for row in listed if isinstance(listed, list) else []:
            if isinstance(row, dict):
                rows[(node, str(row.get("neighbor")))] = (str(row.get("state")), row.get("changes"))
    return rows


def bfd_unchanged(before: BfdRows, after: BfdRows, storm: set[tuple[str, str]]) -> list[Finding]:
    """Every session but the `storm`'s as it was; the storm's own changes, for the record."""
    moved = [f"{n} {a}: {before.get((n, a))} -> {v}" for (n, a), v in after.items()
             if (n, a) not in storm and before.get((n, a)) != v]  # fmt: skip
    others = len(after) - len(storm)
    text = "; ".join(moved) if moved else f"the {others} other BFD sessions in status unchanged"
    flaps = [f"{n} {a} {before.get((n, a))} -> {after.get((n, a))}" for n, a in sorted(storm)]
    return [Finding(text, bool(after) and not moved), Finding("; ".join(flaps), True)]


def storm(t: Trial, node: str) -> None:
    """Drop BFD on `node`'s uplink to leaf1 for STORM_DROP s, let it pass for STORM_PASS s,
    STORM_FLAPS times (pacing the fault, not waiting for anything)."""
    start = now()
    for flap in range(STORM_FLAPS):
        faults.drop_bfd(t.topology, node)
        time.sleep(max(0.0, start + flap * (STORM_DROP + STORM_PASS) + STORM_DROP - now()))
        faults.drop_bfd(t.topology, node, undo=True)
        time.sleep(max(0.0, start + (flap + 1) * (STORM_DROP + STORM_PASS) - now()))


@fault(
    "BFD flap storm on one neighbor (the uplink to leaf1)",
    f"{STORM_FLAPS} drops of {STORM_DROP:g} s: every other BFD session unchanged, leaf2's and "
    "the spine's FIBs unchanged, others stay; back <= {session:.2f} s",
    needs_bfd=True,
)
def bfd_flap_storm(t: Trial, node: str) -> list[Finding]:
    leaf = {str(a) for a in interface_addresses(t.topology.netns(LEAF))}
    found = [bfd_before(t, LEAF, node)]
    before = bfd_rows(t)
    t0 = now()
    t.check.free(node, at=t0, why="BFD flap storm")
    try:
        storm(t, node)
    finally:
        faults.drop_bfd(t.topology, node, undo=True)  # a storm cut short leaves no drop
    flapped = {(n, a) for n, a in before if n == node and a in leaf}
    found += bfd_unchanged(before, bfd_rows(t), flapped)
    found += [steady(t, OTHER, t0), steady(t, SPINE, t0), others_stayed(t, node, t0)]
    t1 = now()
    t.check.rejoin(node, at=t1, within=SESSION_BACK, why="storm over")
    return [*found, t.until_in(node, t1, SESSION_BACK)]

"""The benchmark on the dual-homed network (two leaves with BFD and BGP at vendor-default
timers, a spine, the client behind it): its scenarios and their schedule.

Every scenario runs under the client's load (200 new HTTPS connections a second to the IPv4
VIP, through the spine) and reports its failed requests, split by time against every router's
FIB changes for that VIP (`traffic.split_failures`), and which node answered how many
(`answered_by`: a node that gets no traffic fails no request, whatever its fault). The faults
run one node at a time, so the other two keep serving:
- `node-power-off`: every link of the node drops everything (`faults.drop_uplinks`) and every
  process of it stops (`faults.freeze_node`): out of both leaves' FIBs;
- `daemon-freeze`: the health process SIGSTOPped (`scenarios.injectors`); `exabgp-frozen`:
  ExaBGP SIGSTOPped: out of both leaves;
- `uplink-cut`: the node's link to leaf1 drops everything (`faults.drop_link`): out of
  leaf1's FIB, while leaf2 must keep it all along (`leaf2_lost`);
- `leaf-failure`: leaf1's links silent and its FRR daemons killed (`faults.router_down`): until
  the spine no longer routes through leaf1; the failed requests must be in flight only;
- `readyz-failure` (and recovery) and `planned-restart` as on the simple network.
A system that cannot notice a silent peer (no BFD: the baselines, `announcer-no-bfd`) waits
for the 90 s hold time there: those scenarios are capped at `HOLD_CAP` and take one sample.

It must not render results (`report`) nor choose which systems run (`run`).
"""

from __future__ import annotations

import collections
import dataclasses
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from announcer.lab import faults, peering, routers, timeline
from announcer.lab.bench import outcome as names
from announcer.lab.bench import rolling, scenarios, systems
from announcer.lab.bench.outcome import Outcome, Sample
from announcer.lab.bench.phase import Phase
from announcer.lab.bench.scenarios import RESTORE_TIMEOUT, Plan
from announcer.lab.bench.systems import BenchError, System
from announcer.lab.bench.traffic import LoadClient, split_failures
from announcer.lab.bounds import GAP
from announcer.lab.fib import IPAddress, IPNetwork
from announcer.lab.topology import Topology
from announcer.lab.watch import FibWatcher, interface_addresses
from announcer.lab.watchset import RouterWatch
from announcer.status_protocol import JSONObject

LEAF, OTHER, SPINE = "leaf1", "leaf2", "spine"
HOLD_CAP = 100.0  # the routers' 90 s hold time, measured rather than cut short
LEAF_BACK = 40.0  # leaf1 up again: zebra, bgpd, bfdd, then every session

Step = Callable[[Phase], dict[str, Outcome]]
Inject = Callable[[Phase, str], None]


def is_dual(topology: Topology) -> bool:
    """Whether `topology` has several edge routers (the dual-homed network)."""
    return len(routers.edge_routers(topology)) > 1


def steps(plan: Plan, raw: Path) -> list[tuple[str, Step]]:
    """The dual-homed scenarios in the order they run: (what, how) for `run`."""

    def loaded(name: str, step: Step) -> tuple[str, Step]:
        return name, lambda p: under_load(p, plan, raw / f"{name}.jsonl", name, step)

    return [
        loaded(names.READYZ, lambda p: _readyz(p, plan)),
        loaded(names.FREEZE, lambda p: {names.FREEZE: node_faults(p, plan, names.FREEZE)}),
        loaded(names.EXABGP_FROZEN,
               lambda p: {names.EXABGP_FROZEN: node_faults(p, plan, names.EXABGP_FROZEN)}),
        loaded(names.UPLINK, lambda p: {names.UPLINK: node_faults(p, plan, names.UPLINK)}),
        loaded(names.POWER_OFF,
               lambda p: {names.POWER_OFF: node_faults(p, plan, names.POWER_OFF)}),
        loaded(names.LEAF, lambda p: {names.LEAF: leaf_failure(p, plan)}),
        (names.PLANNED, lambda p: {names.PLANNED: rolling.planned_restart(
            p, plan, delay=3.0, raw=raw / f"{names.PLANNED}.jsonl")}),
    ]  # fmt: skip


def _readyz(phase: Phase, plan: Plan) -> dict[str, Outcome]:
    failure, recovery = scenarios.readyz(phase, plan)
    return {names.READYZ: failure, names.RECOVERY: recovery}


# ---- the schedule -----------------------------------------------------------------------------


def without_bfd(system: System, topology: Topology, node: str) -> bool:
    """Whether `system` leaves a silent node to the routers' hold time."""
    if not system.is_announcer:
        return True
    if system.bfd is not None:
        return not bool(system.bfd.get("enabled"))
    return not systems.node_config(topology, node).bfd.enabled


def waits_for_hold(scenario: str, system: System, no_bfd: bool) -> bool:
    """Whether only the 90 s hold time takes the node out in `scenario`: a silent node or
    uplink without BFD; a frozen ExaBGP without announcer's liveness check."""
    if scenario in (names.POWER_OFF, names.UPLINK):
        return no_bfd
    return scenario == names.EXABGP_FROZEN and not system.is_announcer


def schedule(
    nodes: Sequence[str], scenario: str, *, per_node: int, rounds: int, slow: bool
) -> list[str]:
    """The nodes `scenario` faults, one after the other: `rounds` passes over the first
    `per_node` nodes (node-power-off), one pass for the others, one node only when each
    sample waits for the hold time (`slow`)."""
    if slow:
        return list(nodes[:1])
    chosen = list(nodes[:per_node])
    return chosen * (rounds if scenario == names.POWER_OFF else 1)


def cap_of(scenario: str, plan: Plan) -> float:
    return plan.never_after if scenario == names.FREEZE else HOLD_CAP


# ---- faults on one node -----------------------------------------------------------------------


def injectors() -> dict[str, Inject]:
    """How each node fault is injected; `restore_node` undoes every one."""

    def power_off(phase: Phase, node: str) -> None:
        faults.drop_uplinks(phase.topology, node)
        faults.freeze_node(phase.topology, node)

    def exabgp_frozen(phase: Phase, node: str) -> None:
        faults.send(phase.topology, node, "exabgp", signal.SIGSTOP)

    return {
        names.POWER_OFF: power_off,
        names.FREEZE: lambda phase, node: scenarios.injectors(phase)[names.FREEZE](node),
        names.EXABGP_FROZEN: exabgp_frozen,
        names.UPLINK: lambda phase, node: faults.drop_link(phase.topology, node),
    }


def node_faults(phase: Phase, plan: Plan, scenario: str) -> Outcome:
    """`scenario` on one node at a time: seconds from the fault until the node was out of
    both leaves' FIBs (uplink-cut: out of leaf1's, leaf2 keeping it)."""
    first = phase.nodes[0]
    no_bfd = without_bfd(phase.system, phase.topology, first)
    slow = waits_for_hold(scenario, phase.system, no_bfd)
    order = schedule(phase.nodes, scenario, per_node=plan.fault_nodes,
                     rounds=plan.fault_nodes, slow=slow)  # fmt: skip
    cap = cap_of(scenario, plan)
    rng = random.Random(f"{plan.seed}-{phase.system.name}-{scenario}")  # noqa: S311 - phases
    samples: list[tuple[str, Sample]] = []
    lost: list[str] = []
    for node in order:
        out, kept = _fault_once(phase, scenario, node, cap=cap, rng=rng)
        samples.append((node, out))
        lost += [] if kept else [f"{node}: out of {OTHER} during the uplink cut"]
    figures: JSONObject = {"hold_time_capped": slow}
    if scenario == names.UPLINK:
        figures["leaf2_lost"] = len(lost)
    return Outcome(
        samples=tuple(s for _, s in samples), nodes=tuple(n for n, _ in samples), cap_s=cap,
        figures=figures, violations=(*lost, *phase.violations()),
    )  # fmt: skip


def _fault_once(
    phase: Phase, scenario: str, node: str, *, cap: float, rng: random.Random
) -> tuple[Sample, bool]:
    """(seconds until out, whether leaf2 kept the node all along)."""
    interval = systems.check_interval(phase.system, phase.topology, node)
    phase.pause(rng.uniform(0.0, interval))
    phase.faulting(node)
    t0 = time.monotonic()
    injectors()[scenario](phase, node)
    if scenario == names.UPLINK:
        out = out_of_router(phase, LEAF, node, t0, cap)
        kept = kept_by(phase, OTHER, node, t0)
    else:
        out, kept = phase.out_after(node, t0, cap), True
    restore_node(phase, node)
    return out, kept


def restore_node(phase: Phase, node: str) -> None:
    """Every process of `node` running again, then `scenarios.restore`."""
    faults.freeze_node(phase.topology, node, undo=True)
    scenarios.restore(phase, node)


# ---- one router's view ------------------------------------------------------------------------


def router_watcher(phase: Phase, router: str) -> FibWatcher:
    if not isinstance(phase.watcher, RouterWatch):
        raise BenchError(f"{phase.topology.name} has no router {router} to watch alone")
    return phase.watcher.watcher(router)


def _gone_at(watcher: FibWatcher, gateways: frozenset[IPAddress], since: float) -> float | None:
    """When `watcher`'s router first routed no VIP through `gateways` after `since`."""
    found = timeline.presence(watcher.histories(), gateways)
    return timeline.first(found, timeline.ANY, False, since)


def out_of_router(phase: Phase, router: str, node: str, since: float, cap: float) -> Sample:
    """Seconds from `since` until `router` routed no VIP through `node`; None past `cap`."""
    return _off(phase, router_watcher(phase, router), phase.gateways[node], since, cap)


def _off(
    phase: Phase, watcher: FibWatcher, gateways: frozenset[IPAddress], since: float, cap: float
) -> Sample:
    phase.watcher.wait(lambda: _gone_at(watcher, gateways, since) is not None, cap)
    at = _gone_at(watcher, gateways, since)
    return None if at is None or at - since > cap else at - since


def kept_by(phase: Phase, router: str, node: str, since: float) -> bool:
    """Whether `router` routed every VIP through `node` all along since `since` (absences up
    to a replace gap aside)."""
    found = timeline.presence(router_watcher(phase, router).histories(), phase.gateways[node])
    lost = timeline.runs(found, timeline.ALL, False, since, time.monotonic())
    return not [a for a, b in lost if b - a > GAP]


# ---- leaf1 fails ------------------------------------------------------------------------------


def leaf_failure(phase: Phase, plan: Plan) -> Outcome:
    """leaf1 fails silently: seconds until the spine routes nothing through it; then leaf1
    comes back and every node must be back in both leaves."""
    topology = phase.topology
    gateways = interface_addresses(topology.netns(LEAF), link_local=True)
    if not _wait(lambda: peering.bfd_up(topology, SPINE, LEAF), LEAF_BACK):
        raise BenchError(f"{SPINE}'s BFD with {LEAF} is not up")
    for node in phase.nodes:
        phase.faulting(node)
    t0 = time.monotonic()
    faults.router_down(topology, LEAF)
    spine = router_watcher(phase, SPINE)
    off = _off(phase, spine, gateways, t0, HOLD_CAP)
    each: JSONObject = {str(vip): per_vip(spine, vip, gateways, t0) for vip in phase.vips}
    faults.router_up(topology, LEAF)
    # The sessions with the spine only: those with the nodes are `Phase.all_in`'s to wait
    # for (a baseline has no IPv6 session).
    if not _wait(lambda: peering.bgp_up(topology, LEAF, SPINE), LEAF_BACK):
        raise BenchError(f"{LEAF}'s BGP sessions with the {SPINE} did not come back within "
                         f"{LEAF_BACK:g} s")  # fmt: skip
    if not phase.all_in(RESTORE_TIMEOUT):
        raise BenchError(f"not every node came back into both leaves after {LEAF} returned")
    for node in phase.nodes:
        phase.healthy(node)
    return Outcome(samples=(off,), nodes=(LEAF,), cap_s=HOLD_CAP, figures={"per_vip_s": each},
                   violations=tuple(phase.violations()))  # fmt: skip


def per_vip(
    watcher: FibWatcher, vip: IPNetwork, gateways: frozenset[IPAddress], since: float
) -> float | None:
    """Seconds from `since` until `watcher`'s router stopped routing `vip` through
    `gateways` (None: not yet); each VIP apart, since each family has its own BFD session."""
    found = timeline.presence([watcher.history(vip)], gateways)
    at = timeline.first(found, timeline.ANY, False, since)
    return None if at is None else round(at - since, 4)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(0.2)  # polling FRR's vty, which has no event to wait on
    return True


# ---- under load -------------------------------------------------------------------------------


def under_load(phase: Phase, plan: Plan, raw: Path, name: str, step: Step) -> dict[str, Outcome]:
    """`step` while the client opens new connections; its failed requests go into the
    figures of the outcome called `name`."""
    vip = rolling.client_vip(phase.vips)
    client = LoadClient(phase.topology, str(vip.network_address), out=raw, rate=plan.rate)
    with client:
        found = step(phase)
        ended = time.monotonic()
        requests = client.stop()
    moments = sorted(
        change.at
        for watcher in _all_watchers(phase)
        for change in watcher.history(vip)
        if client.started <= change.at <= ended
    )
    failures = split_failures(requests, moments)
    figures: JSONObject = {
        "rate_per_s": plan.rate, "failed_requests": failures.failed,
        "total_requests": failures.total, "failed_in_flight_at_fib_change": failures.in_flight,
        "failed_other": failures.other, "failed_by_outcome": dict(failures.by_outcome),
        "answered_by": dict(sorted(collections.Counter(str(r.node) for r in requests).items())),
    }  # fmt: skip
    result = found[name]
    found[name] = dataclasses.replace(result, figures={**result.figures, **figures})
    return found


def _all_watchers(phase: Phase) -> list[FibWatcher]:
    """Every router's watcher (the spine's changes move flows too)."""
    watch = phase.watcher
    return list(watch.watchers.values()) if isinstance(watch, RouterWatch) else []

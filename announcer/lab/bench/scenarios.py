"""The per-node scenarios: readyz failure and recovery, the apiserver crashing, the health
process killed or frozen, the node's link silent, and the steady-state footprint.

Each fault runs on a node on its own schedule, the nodes in parallel (one thread each): the
faults of one node never overlap, and timings are read per node from r1's FIB history, so
parallel nodes only share the machine. Before each injection a random wait of up to one check
interval puts the fault at a random moment of the system's check cycle (a fixed rhythm would
measure one phase of it only). A fault's time is `time.monotonic()` just before the call that
injects it. After each fault the node is brought back (`restore`) and must rejoin r1's FIB
before its next fault; meanwhile the phase's checker watches that no healthy node leaves.

It must not render results (`report`) nor choose which systems run (`run`).
"""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from announcer.lab import faults
from announcer.lab.bench import footprint, systems
from announcer.lab.bench import outcome as names
from announcer.lab.bench.outcome import Outcome, Sample
from announcer.lab.bench.phase import Phase
from announcer.lab.bench.systems import BenchError
from announcer.status_protocol import JSONObject

RESTORE_TIMEOUT = 60.0  # announcer's longest ExaBGP backoff (30 s) plus a restart
SAMPLE_PERIOD = 1.0  # footprint: one /proc reading per second
SETTLE = 0.5  # a node stays in this long after rejoining, before its next fault

T = tuple[Sample, Sample]
R = TypeVar("R")


@dataclass(frozen=True)
class Plan:
    """How much to run: repetitions, caps and durations."""

    repetitions: int = 21  # readyz-failure (and recovery), spread over the nodes
    fault_nodes: int = 3  # nodes on which each process or link fault runs, once each
    rolling: int = 3  # nodes restarted one after the other in a planned restart
    never_after: float = 30.0
    footprint_seconds: float = 60.0
    status_runs: int = 7  # `announcer status` runs per node: 21 over three nodes
    rate: float = 200.0  # client requests per second
    # A planned restart: the apiserver gone (the kubelet restarting it), then listening with
    # /readyz failing (post-start hooks). Short, as for an apiserver that has all it needs.
    down: float = 2.0
    starting: float = 3.0
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> Plan:
        """A smoke run: one repetition of everything, the process and link faults side by
        side on different nodes, one node restarted, short caps and durations."""
        return cls(
            repetitions=1, fault_nodes=1, rolling=1, never_after=8.0, footprint_seconds=5.0,
            status_runs=2, down=1.0, starting=1.0, seed=seed,
        )  # fmt: skip


def _parallel(nodes: Sequence[str], work: Callable[[str], R]) -> dict[str, R]:
    """`work(node)` for every node at once (a thread each): node -> its result."""
    with ThreadPoolExecutor(max_workers=len(nodes) or 1) as pool:
        return dict(zip(nodes, pool.map(work, nodes), strict=True))


def _spread(nodes: Sequence[str], repetitions: int) -> dict[str, int]:
    """`repetitions` dealt over `nodes` in turn: node -> its count, nodes with none left out."""
    counts = {n: len(range(i, repetitions, len(nodes))) for i, n in enumerate(nodes)}
    return {n: c for n, c in counts.items() if c}


def _jitter(phase: Phase, rng: random.Random, node: str) -> None:
    interval = systems.check_interval(phase.system, phase.topology, node)
    phase.pause(rng.uniform(0.0, interval))


# ---- readyz failure and recovery --------------------------------------------------------------


def readyz(phase: Phase, plan: Plan) -> tuple[Outcome, Outcome]:
    """`etcd-down` until the node is out, then `ready` until it is back, `repetitions` times
    over the nodes: (readyz-failure, recovery)."""
    counts = _spread(phase.nodes, plan.repetitions)
    nodes = list(counts)

    def reps(node: str) -> list[T]:
        rng = random.Random(f"{plan.seed}-{phase.system.name}-{node}")  # noqa: S311 - phases
        return [_readyz_once(phase, plan, node, rng) for _ in range(counts[node])]

    found = _parallel(nodes, reps)
    pairs = [(node, pair) for node in nodes for pair in found[node]]
    violations = tuple(phase.violations())
    outs = [(n, out) for n, (out, _) in pairs]
    backs = [(n, back) for n, (_, back) in pairs]
    return _timed(outs, plan, violations), _timed(backs, plan, violations)


def _readyz_once(phase: Phase, plan: Plan, node: str, rng: random.Random) -> T:
    _jitter(phase, rng, node)
    phase.faulting(node)
    t0 = time.monotonic()
    faults.set_apiserver(phase.topology, node, "etcd-down")
    out = phase.out_after(node, t0, plan.never_after)
    _jitter(phase, rng, node)
    t1 = time.monotonic()
    faults.set_apiserver(phase.topology, node, "ready")
    back = phase.in_after(node, t1, plan.never_after)
    restore(phase, node)
    return out, back


def _timed(found: Sequence[tuple[str, Sample]], plan: Plan, violations: tuple[str, ...]) -> Outcome:
    return Outcome(
        samples=tuple(s for _, s in found), nodes=tuple(n for n, _ in found),
        cap_s=plan.never_after, violations=violations,
    )  # fmt: skip


# ---- apiserver crash ----------------------------------------------------------------------------


def apiserver_crash(phase: Phase, plan: Plan) -> Outcome:
    """The node's apiserver dies (`crash`: its listener and every connection gone at once, as
    the kernel does for a killed process) until the node is out, `repetitions` times over the
    nodes; `restore` brings it back before the node's next crash."""
    counts = _spread(phase.nodes, plan.repetitions)
    nodes = list(counts)

    def reps(node: str) -> list[Sample]:
        rng = random.Random(f"{plan.seed}-{phase.system.name}-{node}-c")  # noqa: S311 - phases
        return [_crash_once(phase, plan, node, rng) for _ in range(counts[node])]

    found = _parallel(nodes, reps)
    pairs = [(node, out) for node in nodes for out in found[node]]
    return _timed(pairs, plan, tuple(phase.violations()))


def _crash_once(phase: Phase, plan: Plan, node: str, rng: random.Random) -> Sample:
    _jitter(phase, rng, node)
    phase.faulting(node)
    t0 = time.monotonic()
    faults.set_apiserver(phase.topology, node, "crash")
    out = phase.out_after(node, t0, plan.never_after)
    restore(phase, node)
    return out


# ---- process and link faults ------------------------------------------------------------------


def injectors(phase: Phase) -> dict[str, Callable[[str], None]]:
    """Per scenario, how its fault is injected on a node: SIGKILL or SIGSTOP of the health
    process (announcer's daemon; the baseline's checker), or the node's uplink dropping every
    packet both ways (iptables in its namespace). `restore` undoes each."""
    return {
        names.KILL: lambda node: _signal(phase, node, signal.SIGKILL),
        names.FREEZE: lambda node: _signal(phase, node, signal.SIGSTOP),
        names.SILENT: lambda node: faults.drop_uplinks(phase.topology, node),
    }


def rounds(
    nodes: Sequence[str], kinds: Sequence[str], per_kind: int
) -> list[list[tuple[str, str]]]:
    """Which fault runs on which node when: each kind on `per_kind` nodes. On every node at
    once, one kind after the other; when each kind needs fewer nodes than there are, the kinds
    run side by side on different nodes (a quick run)."""
    if per_kind * len(kinds) <= len(nodes):
        pairs = [
            (kind, nodes[i * per_kind + k]) for i, kind in enumerate(kinds) for k in range(per_kind)
        ]
        return [pairs]
    return [[(kind, node) for node in nodes[:per_kind]] for kind in kinds]


def process_faults(phase: Phase, plan: Plan) -> dict[str, Outcome]:
    """daemon-kill, daemon-freeze and node-silent: time until the node leaves r1's FIB."""
    inject = injectors(phase)
    found: dict[str, list[tuple[str, Sample]]] = {kind: [] for kind in inject}
    for batch in rounds(phase.nodes, list(inject), plan.fault_nodes):
        kinds = {node: kind for kind, node in batch}
        work = functools.partial(_fault_of, phase, plan, inject, kinds)
        for node, out in _parallel(list(kinds), work).items():
            found[kinds[node]].append((node, out))
    violations = tuple(phase.violations())
    return {kind: _timed(pairs, plan, violations) for kind, pairs in found.items()}


def _signal(phase: Phase, node: str, sig: signal.Signals) -> None:
    proc = systems.health_process(phase.topology, phase.system, node)
    if proc is None:
        raise BenchError(f"{node}: no health process of {phase.system.name} to signal")
    faults.kill(proc.pid, sig)


def _fault_of(
    phase: Phase,
    plan: Plan,
    inject: dict[str, Callable[[str], None]],
    kinds: dict[str, str],
    node: str,
) -> Sample:
    """`node`'s fault of this round (`kinds[node]`): seconds until it left r1's FIB."""
    rng = random.Random(f"{plan.seed}-{phase.system.name}-{node}-f")  # noqa: S311 - phases
    _jitter(phase, rng, node)
    phase.faulting(node)
    t0 = time.monotonic()
    inject[kinds[node]](node)
    out = phase.out_after(node, t0, plan.never_after)
    restore(phase, node)
    return out


# ---- back to clean ----------------------------------------------------------------------------


def restore(phase: Phase, node: str) -> None:
    """Undo every fault on `node` and wait until it is back in r1's FIB (reinstalling its
    system if it does not come back); from then on it must stay."""
    topology, system = phase.topology, phase.system
    for proc in (
        systems.health_process(topology, system, node),
        faults.find(topology, node, "exabgp"),
    ):
        if proc is not None:
            faults.kill(proc.pid, signal.SIGCONT)
    if faults.link_dropped(topology, node):
        faults.drop_uplinks(topology, node, undo=True)
    faults.set_apiserver(topology, node, "ready")
    if phase.in_after(node, time.monotonic(), RESTORE_TIMEOUT) is None:
        systems.install(topology, system, [node])
        if phase.in_after(node, time.monotonic(), RESTORE_TIMEOUT) is None:
            raise BenchError(f"{node} ({system.name}) did not come back into r1's FIB")
    phase.healthy(node)
    phase.pause(SETTLE)


# ---- footprint --------------------------------------------------------------------------------


def footprint_of(phase: Phase, plan: Plan) -> Outcome:
    """Every node healthy for `footprint_seconds`: memory and CPU of everything the system
    runs there; then, for announcer, the wall time of `announcer status` on each node."""
    if not phase.all_in(RESTORE_TIMEOUT):
        raise BenchError(f"{phase.system.name}: not every node is in r1's FIB")
    readings = _parallel(phase.nodes, lambda node: _readings(phase, plan, node))
    each = [footprint.Usage.between(readings[n]) for n in phase.nodes]
    figures: JSONObject = {
        "rss_mib": round(sum(u.rss_mib for u in each) / len(each), 1),
        "rss_mib_max": round(max(u.rss_mib_max for u in each), 1),
        "pss_mib": round(sum(u.pss_mib for u in each) / len(each), 1),
        "cpu_percent": round(sum(u.cpu_percent for u in each) / len(each), 2),
        "seconds": round(min(u.seconds for u in each), 1),
        "per_node": {n: u.figures() for n, u in zip(phase.nodes, each, strict=True)},
    }
    timings: list[tuple[str, Sample]] = []
    if phase.system.is_announcer:
        timings = [(n, t) for n in phase.nodes for t in _status_times(phase, plan, n)]
    return Outcome(
        samples=tuple(t for _, t in timings), nodes=tuple(n for n, _ in timings),
        figures=figures,
        violations=tuple(phase.violations()),
    )  # fmt: skip


def _readings(phase: Phase, plan: Plan, node: str) -> list[footprint.Sample]:
    """/proc readings of the system's process tree on `node` over the footprint window."""
    readings: list[footprint.Sample] = []
    end = time.monotonic() + plan.footprint_seconds
    while True:
        now = time.monotonic()
        root = systems.speaker_root(phase.topology, phase.system, node)
        if root is None:
            raise BenchError(f"{node}: {phase.system.name} is not running")
        pids = [p.pid for p in faults.processes(phase.topology, node)]
        readings.append(footprint.sample(footprint.tree(root.pid, pids), now))
        if now >= end:
            return readings
        phase.pause(min(SAMPLE_PERIOD, max(0.0, end - time.monotonic())))


def _status_times(phase: Phase, plan: Plan, node: str) -> list[Sample]:
    """Wall time of `announcer status` against the node's daemon, as an operator runs it."""
    socket = faults.host_path(phase.topology, node, faults.RUN_DIR) / "status.sock"
    command = [str(Path(sys.executable).parent / "announcer"), "status", "--socket", str(socket)]
    times: list[Sample] = []
    for _ in range(plan.status_runs):
        start = time.monotonic()
        result = subprocess.run(command, capture_output=True, check=False, timeout=30)
        took = time.monotonic() - start
        times.append(took if result.returncode == 0 else None)
    return times

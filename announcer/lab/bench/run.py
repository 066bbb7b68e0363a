"""The whole benchmark: lab up, every scenario for every system, lab down, the report.

Systems run one after the other on the same lab (`systems.install` switches all three
control-plane nodes), each in its own `Phase`: first the footprint (a steady state right after
the switch), then readyz failure and recovery, the apiserver crashing, the health process
killed and frozen, the node silent, and the planned restart with `--shutdown-delay-duration`
3 s and 0 s (on the dual-homed network, `network.steps` instead: its faults under client
load). The lab is torn down at the end whatever happened (an error, Ctrl-C, SIGTERM), and a
lab of the same name that is already up is refused rather than reused (the benchmark would
have to tear it down).
Also records the machine and the software versions.

It must not measure (`scenarios`, `rolling`) nor render (`report`, `plots`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import announcer
from announcer.lab import frr, realiser
from announcer.lab.bench import network, rolling, scenarios, systems
from announcer.lab.bench import outcome as names
from announcer.lab.bench.outcome import Outcome
from announcer.lab.bench.phase import Phase
from announcer.lab.bench.scenarios import Plan
from announcer.lab.bench.systems import BenchError, System
from announcer.lab.topology import Topology
from announcer.status_protocol import JSONObject

Say = Callable[[str], None]


class Interrupted(BenchError):
    """SIGTERM arrived: stop (and tear the lab down)."""


@dataclass
class Results:
    """Scenario -> system -> outcome, plus what the run was."""

    plan: Plan
    outcomes: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    settings: dict[str, JSONObject] = field(default_factory=dict)
    meta: JSONObject = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, scenario: str, system: str, result: Outcome) -> None:
        self.outcomes.setdefault(scenario, {})[system] = result


def run_bench(
    topology: Topology, plan: Plan, chosen: Sequence[System], *, raw: Path, say: Say = print
) -> Results:
    """Every scenario for every system in `chosen`; the lab is down again on return."""
    results = Results(plan)
    start = time.monotonic()
    results.meta = machine_and_software()
    results.meta["network"] = "dual-homed" if network.is_dual(topology) else "simple"
    with _sigterm_interrupts():
        if found := realiser.leftovers(topology):
            raise BenchError(
                f"lab {topology.name} is already there ({'; '.join(found)}): the benchmark "
                f"brings up its own; `announcer lab down` it first (or use another "
                "ANNOUNCER_LAB_NAME)"
            )
        try:
            say(f"lab {topology.name}: up")
            realiser.up(topology, say=lambda line: None)
            for index, system in enumerate(chosen):
                _run_system(topology, plan, system, results, first=index == 0, raw=raw, say=say)
        finally:
            say(f"lab {topology.name}: down")
            realiser.down(topology, say=lambda line: None)
    results.seconds = time.monotonic() - start
    return results


def _run_system(
    topology: Topology, plan: Plan, system: System, results: Results, *,
    first: bool, raw: Path, say: Say,
) -> None:  # fmt: skip
    nodes = realiser.nodes_with_role(topology, realiser.CONTROL_PLANE)
    began = time.monotonic()
    if not (first and not system.reconfigured):  # `lab up` starts every node with announcer
        say(f"{system.name}: switching {', '.join(nodes)}")
        systems.install(topology, system, nodes)
    results.settings[system.name] = systems.settings(system, topology, nodes[0])
    with Phase(topology, system) as phase:
        if not phase.all_in(scenarios.RESTORE_TIMEOUT):
            raise BenchError(f"{system.name}: the nodes did not all get into the routers' FIBs")
        by_network = network.steps if network.is_dual(topology) else _steps
        for scenario, measure in by_network(plan, raw / system.name):
            t0 = time.monotonic()
            for name, result in measure(phase).items():
                results.add(name, system.name, result)
                say(f"{system.name}: {name}: {summary(result)}")
            say(f"{system.name}: {scenario} took {time.monotonic() - t0:.0f} s")
    say(f"{system.name}: {time.monotonic() - began:.0f} s")


Step = Callable[[Phase], dict[str, Outcome]]


def _steps(plan: Plan, raw: Path) -> list[tuple[str, Step]]:
    def planned(name: str, delay: float) -> Step:
        return lambda p: {
            name: rolling.planned_restart(p, plan, delay=delay, raw=raw / f"{name}.jsonl")
        }

    return [
        (names.FOOTPRINT, lambda p: {names.FOOTPRINT: scenarios.footprint_of(p, plan)}),
        (f"{names.READYZ}, {names.RECOVERY}", lambda p: _readyz(p, plan)),
        (names.CRASH, lambda p: {names.CRASH: scenarios.apiserver_crash(p, plan)}),
        (f"{names.KILL}, {names.FREEZE}, {names.SILENT}",
         lambda p: scenarios.process_faults(p, plan)),
        (names.PLANNED, planned(names.PLANNED, 3.0)),
        (names.PLANNED_0, planned(names.PLANNED_0, 0.0)),
    ]  # fmt: skip


def _readyz(phase: Phase, plan: Plan) -> dict[str, Outcome]:
    failure, recovery = scenarios.readyz(phase, plan)
    return {names.READYZ: failure, names.RECOVERY: recovery}


def summary(result: Outcome) -> str:
    """One line for the progress log."""
    stats = result.stats()
    parts = [
        f"{k.removesuffix('_s')} {'never' if v is None else f'{v:.2f} s'}" for k, v in stats.items()
    ]
    for key in ("failed_requests", "failed_other", "rss_mib", "cpu_percent"):
        if key in result.figures:
            parts.append(f"{key} {result.figures[key]}")
    if result.violations:
        parts.append(f"{len(result.violations)} violations: {'; '.join(result.violations)}")
    return ", ".join(parts) or "-"


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises Interrupted (so the lab goes down), in this process only: pyroute2
    forks to enter namespaces, and a fork must die plainly rather than run our `finally`."""
    owner = os.getpid()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---- what it ran on ---------------------------------------------------------------------------


def machine_and_software() -> JSONObject:
    return {
        "machine": {
            "cpu": _lscpu("Model name") or platform.processor(),
            "cores": os.cpu_count() or 0,
            "kernel": platform.release(),
            "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
            "virtualization": _lscpu("Hypervisor vendor") or "none",
        },
        "software": {
            "announcer": announcer.__version__,
            "exabgp": importlib.metadata.version("exabgp"),
            "frr": _first_line([str(frr.FRR_BIN_DIR / "zebra"), "--version"]).rpartition(" ")[2],
            "python": platform.python_version(),
            "curl": " ".join(_first_line(["curl", "--version"]).split()[:2]),
        },
    }


def _lscpu(key: str) -> str:
    for line in _run(["lscpu"]).splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def _first_line(argv: list[str]) -> str:
    return next(iter(_run(argv).splitlines()), "")


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout


def plan_record(plan: Plan) -> JSONObject:
    return dict(asdict(plan))

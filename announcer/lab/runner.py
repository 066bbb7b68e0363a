"""`announcer lab faults`: the fault matrix, run against the lab with the invariant checker on.

Every fault of `matrix.FAULTS` and `matrix_dual.DUAL_FAULTS` (or those named with `--only`)
that applies to the lab (one router, or the dual-homed leaves and spine: `Fault.network`)
runs on its node, one after another on one lab; a fault that needs BFD in the daemon is
skipped (and said so) while the nodes' status has no `bfd` member. Each runs back to the
clean state before and after; the
table says fault | expected | measured | pass/fail/skip, and the exit status is 1 if any fault
failed. A fault fails when a finding misses its bound, when the checker saw a violation of
I1-I4 while it ran (or while the lab went back to clean after it), or when an edge router's
BGP table holds anything from a node but the VIPs. The lab is brought up if it is not (and
then torn down at the end unless --keep); a lab already up is used and left up.

It must not define faults (`matrix`) nor evaluate invariants (`invariants`).
"""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from announcer.lab import faults, realiser, routers
from announcer.lab.cli import default_topology, lab, topology_option
from announcer.lab.matrix import FAULTS
from announcer.lab.matrix_dual import DUAL_FAULTS
from announcer.lab.netns import LabError
from announcer.lab.patterns import ANY_NETWORK, Fault
from announcer.lab.topology import Topology, TopologyError, load_topology
from announcer.lab.trial import Finding, Trial

Say = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    fault: str
    node: str
    expected: str
    findings: tuple[Finding, ...]
    violations: tuple[str, ...]
    seconds: float
    skipped: str = ""  # why the fault did not run (it needs what the lab does not have)

    @property
    def ok(self) -> bool:
        return not self.violations and all(f.ok for f in self.findings)

    @property
    def result(self) -> str:
        return "skip" if self.skipped else "pass" if self.ok else "FAIL"

    @property
    def measured(self) -> str:
        return "; ".join([*(f.text for f in self.findings), *self.violations]) or self.skipped


def run_fault(trial: Trial, fault: Fault, node: str | None = None) -> Outcome:
    """Clean state, the fault, clean state again; what was found and violated meanwhile.
    Violations seen while getting clean first are reported too, marked as earlier."""
    node = node or fault.node
    start = time.monotonic()
    if fault.needs_bfd and (missing := without_bfd(trial)):
        why = f"skipped: needs BFD in the daemon (no `bfd` in the status of {', '.join(missing)})"
        return Outcome(fault.name, node, fault.describe(trial.bounds[node]), (), (), 0.0, why)
    findings: list[Finding] = []
    earlier: list[str] = []
    try:
        trial.restore()
        earlier = [f"(before the fault) {v}" for v in trial.check.check()]
        findings = fault.run(trial, node)
    except (LabError, TimeoutError, OSError) as exc:
        findings.append(Finding(f"error: {exc}", False))
    try:
        trial.restore()
    except LabError as exc:
        findings.append(Finding(f"error: {exc}", False))
    violations = [*earlier, *(str(v) for v in trial.check.check())]
    try:
        violations += [f"I3 r1: received {prefix}" for prefix in trial.rib_foreign()]
    except LabError as exc:
        violations.append(f"I3 r1: BGP table unreadable: {exc}")
    expected = fault.describe(trial.bounds[node])
    took = time.monotonic() - start
    return Outcome(fault.name, node, expected, tuple(findings), tuple(violations), took)


CATALOGUE = [*FAULTS, *DUAL_FAULTS]


def without_bfd(trial: Trial) -> list[str]:
    """The nodes whose daemon's status has no `bfd` member (it runs no BFD, or is silent)."""
    said = {node: faults.status(trial.topology, node, timeout=2.0) for node in trial.nodes}
    return [node for node, status in said.items() if status is None or "bfd" not in status]


def fitting(topology: Topology, chosen: Sequence[Fault]) -> list[Fault]:
    """The faults that apply to `topology` (one router, or leaves and a spine)."""
    edge = len(routers.edge_routers(topology))
    return [fault for fault in chosen if fault.fits(edge)]


def select(names: Iterable[str]) -> list[Fault]:
    """The faults named (case-insensitive substrings), all of them if none."""
    wanted = [name.lower() for name in names]
    chosen = [f for f in CATALOGUE if not wanted or any(w in f.name.lower() for w in wanted)]
    if wanted and not chosen:
        raise LabError(f"no fault matches {', '.join(names)}: see `announcer lab faults --list`")
    return chosen


def run_faults(topology: Topology, faults: Sequence[Fault], *, say: Say = print) -> list[Outcome]:
    outcomes = []
    with Trial(topology, say=say) as trial:
        for fault in faults:
            outcome = run_fault(trial, fault)
            say(
                f"{outcome.result}  {fault.name} on {outcome.node} "
                f"({outcome.seconds:.1f} s): {outcome.measured}"
            )
            outcomes.append(outcome)
    return outcomes


def render_table(outcomes: Sequence[Outcome], *, width: int = 48) -> str:
    """fault | expected | measured | pass/fail, as a Markdown table."""
    rows = ["| fault | expected | measured | result |", "|---|---|---|---|"]
    for o in outcomes:
        fault = f"{o.fault} ({o.node})"
        measured = "<br>".join(textwrap.wrap(o.measured, width)) if width else o.measured
        rows.append(f"| {fault} | {o.expected} | {measured} | {o.result} |")
    return "\n".join(rows) + "\n"


@contextlib.contextmanager
def lab_for(topology: Topology, *, keep: bool, say: Say) -> Iterator[None]:
    """The lab up for the duration: one already up is used and left; one brought up here is
    torn down afterwards unless `keep`."""
    took = realiser.up(topology, recreate=True, say=lambda _: None)
    ours = took > 0.0
    say(
        f"lab {topology.name} up in {took:.1f} s"
        if ours
        else f"lab {topology.name} is up: using it"
    )
    try:
        yield
    finally:
        if ours and not keep:
            realiser.down(topology, say=lambda _: None)


def load(path: Path | None) -> Topology:
    try:
        return load_topology(path or default_topology())
    except TopologyError as exc:
        raise click.ClickException(str(exc)) from exc


@lab.command("faults")
@topology_option
@click.option(
    "--only", multiple=True, metavar="NAME", help="Only faults whose name holds NAME (repeatable)."
)
@click.option("--list", "list_", is_flag=True, help="List the faults and exit.")
@click.option("--keep", is_flag=True, help="Leave a lab brought up here running at the end.")
def faults_command(
    topology_path: Path | None, only: tuple[str, ...], list_: bool, keep: bool
) -> None:
    """Run the fault matrix against the lab with the invariant checker on: prints fault |
    expected | measured | pass/fail; exit status 1 if any fault failed."""
    try:
        chosen = select(only)
        if list_:
            for fault in chosen:
                where = "every node" if fault.shared else fault.node
                extra = "" if fault.network == ANY_NETWORK else f"; {fault.network} lab"
                extra += "; needs BFD in the daemon" if fault.needs_bfd else ""
                click.echo(f"{fault.name}  ({where}{extra})")
            return
        topology = load(topology_path)
        start = time.monotonic()
        with lab_for(topology, keep=keep, say=click.echo):
            outcomes = run_faults(topology, fitting(topology, chosen), say=click.echo)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    failed = [o for o in outcomes if not o.ok]
    click.echo("\n" + render_table(outcomes, width=0))
    click.echo(
        f"{len(outcomes) - len(failed)}/{len(outcomes)} faults passed in "
        f"{time.monotonic() - start:.0f} s"
    )
    if failed:
        raise SystemExit(1)

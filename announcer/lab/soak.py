"""`announcer lab soak --duration 30m`: random faults from the matrix, one after another, with
the invariant checker on for the whole run.

Each round picks a fault of the catalogue and, unless the fault concerns every node, a
control-plane node at random (`--seed` replays a run), runs it as the matrix does (clean
state before and after) and prints one line. The checker is never restarted, so a violation
between two faults (while the lab goes back to clean) is counted too. At the end: rounds,
failures per fault, and exit status 1 if any round failed.

It must not define faults or bounds; `runner.run_fault` is the one way a fault is run.
"""

from __future__ import annotations

import collections
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from announcer.lab.cli import lab, topology_option
from announcer.lab.netns import LabError
from announcer.lab.runner import CATALOGUE, Outcome, fitting, lab_for, load, run_fault
from announcer.lab.topology import Topology
from announcer.lab.trial import Trial

Say = Callable[[str], None]
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class SoakResult:
    seconds: float
    outcomes: tuple[Outcome, ...]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def summary(self) -> str:
        runs = collections.Counter(o.fault for o in self.outcomes)
        fails = collections.Counter(o.fault for o in self.failed)
        lines = [
            f"{len(self.outcomes)} faults in {self.seconds / 60:.1f} min, {len(self.failed)} failed"
        ]
        lines += [
            f"  {runs[name]:3}x {name}" + (f"  ({fails[name]} FAILED)" if fails[name] else "")
            for name in sorted(runs)
        ]
        return "\n".join(lines)


def parse_duration(text: str) -> float:
    """`30m`, `90s`, `2h` or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m or 2h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def soak(topology: Topology, duration: float, *, seed: int, say: Say = print) -> SoakResult:
    """Random faults until `duration` seconds have passed (the last one is finished)."""
    rng = random.Random(seed)  # noqa: S311 - picks faults, replayable by seed
    start = time.monotonic()
    outcomes: list[Outcome] = []
    catalogue = fitting(topology, CATALOGUE)
    with Trial(topology, say=say) as trial:
        while time.monotonic() - start < duration:
            fault = rng.choice(catalogue)
            node = fault.node if fault.shared else rng.choice(trial.nodes)
            outcome = run_fault(trial, fault, node)
            outcomes.append(outcome)
            say(
                f"[{time.monotonic() - start:6.0f} s] {outcome.result}  "
                f"{fault.name} on {node}: {outcome.measured}"
            )
    return SoakResult(time.monotonic() - start, tuple(outcomes))


@lab.command("soak")
@topology_option
@click.option("--duration", default="30m", show_default=True, help="e.g. 90s, 30m, 2h")
@click.option("--seed", type=int, default=None, help="Replay a run [default: random].")
@click.option("--keep", is_flag=True, help="Leave a lab brought up here running at the end.")
def soak_command(topology_path: Path | None, duration: str, seed: int | None, keep: bool) -> None:
    """Run random faults from the matrix for DURATION with the invariant checker on; exit
    status 1 if any fault failed or any invariant was violated."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from exc
    seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
    topology = load(topology_path)
    click.echo(f"soak: {duration} of random faults, seed {seed}")
    try:
        with lab_for(topology, keep=keep, say=click.echo):
            result = soak(topology, seconds, seed=seed, say=click.echo)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.summary())
    if result.failed:
        raise SystemExit(1)

"""`announcer lab bench`: the failover benchmark, one command (attached to the `lab` group).

Brings its own lab up (refusing one of the same name that is already up), runs every scenario
for every system, tears the lab down, and writes `bench.json`, `bench-run.json`, `bench.md`,
the PNG plots and the client's raw records under `--out`. Exit 0 once the files are written
(the figures are the result, whether or not a target is met), 1 if the run failed, 130 when
interrupted.

It must not measure or render anything itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from announcer.lab.cli import default_topology, lab, topology_option
from announcer.lab.netns import LabError
from announcer.lab.topology import TopologyError, load_topology

EXIT_INTERRUPTED = 130
# Kept here (checked against `systems.SYSTEMS` by the tests) so that registering the command
# imports nothing of the benchmark: every `announcer` invocation loads the lab group.
SYSTEM_NAMES = ("announcer", "exabgp-healthcheck", "exabgp-healthcheck-matched")
# The dual-homed network's announcer variants (checked against `systems.VARIANTS`).
VARIANT_NAMES = ("announcer-bfd-100ms", "announcer-no-bfd")
DEFAULT_REPETITIONS = 21


@lab.command()
@topology_option
@click.option(
    "--repetitions",
    "-n",
    type=click.IntRange(1),
    default=DEFAULT_REPETITIONS,
    show_default=True,
    help="readyz-failure (and recovery) and apiserver-crash repetitions per system, over cp1..cp3.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Where to write the results.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A smoke run: one repetition of each scenario on one node, short caps.",
)
@click.option(
    "--system",
    "system_names",
    multiple=True,
    type=click.Choice(SYSTEM_NAMES + VARIANT_NAMES),
    help="Only this system (repeatable) [default: the three; on the dual-homed network "
    "also the announcer variants with BFD at 100 ms x 3 and without BFD].",
)
@click.option("--seed", type=int, default=None, help="Random phase of the faults [default: time].")
@click.pass_context
def bench(
    ctx: click.Context, topology_path: Path | None, repetitions: int, out: Path, quick: bool,
    system_names: tuple[str, ...], seed: int | None,
) -> None:  # fmt: skip
    """Measure failover and request loss: announcer against ExaBGP's own healthcheck (needs
    root; about 14 minutes on 2 cores, --quick under 3).

    Every scenario (readyz-failure, recovery, apiserver-crash, planned-restart with shutdown
    delay 3 s and 0 s under 200 new HTTPS connections a second, daemon-kill, daemon-freeze,
    node-silent, footprint) for every system (announcer, exabgp-healthcheck,
    exabgp-healthcheck-matched), timed from the fault to r1's kernel FIB (netlink events, one
    monotonic clock).

    With --topology containerlab/dual-homed.clab.yml: node-power-off, uplink-cut,
    leaf-failure, exabgp-frozen, daemon-freeze, readyz-failure and planned-restart, each under
    the client's load, timed to every leaf's FIB, for five systems (the three, plus
    announcer-bfd-100ms and announcer-no-bfd); about 24 minutes."""
    from announcer.lab.bench import plots, report
    from announcer.lab.bench.network import is_dual
    from announcer.lab.bench.run import Interrupted, run_bench
    from announcer.lab.bench.scenarios import Plan
    from announcer.lab.bench.systems import DUAL_SYSTEMS, SYSTEMS, by_name

    try:
        topology = load_topology(topology_path or default_topology())
    except TopologyError as exc:
        raise click.ClickException(str(exc)) from exc
    seed = int(time.time()) if seed is None else seed
    plan = Plan.quick(seed) if quick else Plan(repetitions=repetitions, seed=seed)
    every = DUAL_SYSTEMS if is_dual(topology) else SYSTEMS
    chosen = by_name(system_names) if system_names else every
    out = out.resolve()
    try:
        results = run_bench(topology, plan, chosen, raw=out / "raw", say=click.echo)
    except Interrupted as exc:
        click.echo(f"stopped: {exc}", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    except (LabError, TimeoutError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    written = report.write(results, out)
    try:
        written += plots.write_all(results.outcomes, out)
    except ImportError as exc:
        click.echo(f"no plots ({exc}): install announcer[bench]", err=True)
    click.echo(report.markdown(results))
    click.echo("wrote " + ", ".join(str(p) for p in written))

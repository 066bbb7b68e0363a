"""The benchmark's files: `bench.json`, `bench-run.json` and `bench.md`.

`bench.json` maps scenario -> system -> figures: `samples` (seconds; null = never within
`cap_s`), `nodes` (where each sample was taken), `p50_s`, `p99_s`, `max_s` (null = never),
`never`, then the scenario's own figures (`failed_requests`, `total_requests`, ... for the
planned restarts; `rss_mib`, `cpu_percent`, ... for the footprint, whose samples are the wall
times of `announcer status`) and `violations` (a healthy node withdrawn, a foreign route).
`bench-run.json` says what ran: the plan, each system's settings, the machine, the software
versions and how long it took. `bench.md` has the results table, announcer against the
issue's targets with its ratio to `exabgp-healthcheck`, and the machine.

It must not measure or plot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from announcer.lab.bench import outcome as names
from announcer.lab.bench.outcome import Outcome, Sample
from announcer.lab.bench.run import Results, plan_record
from announcer.lab.bench.systems import ANNOUNCER, BFD_100MS, HEALTHCHECK
from announcer.status_protocol import JSONObject, JSONValue

TIMED = (
    names.READYZ,
    names.RECOVERY,
    names.KILL,
    names.FREEZE,
    names.SILENT,
    names.CRASH,
    *names.DUAL,
)
ROUTER_BFD = 0.9  # the spine's and leaves' BFD with each other: 300 ms x 3
FIB = 0.1  # allowance for the spine's FIB update once its BFD saw leaf1 down
PLANNED = (names.PLANNED, names.PLANNED_0)


def figures(result: Outcome) -> JSONObject:
    data: JSONObject = {}
    if result.samples:
        data["samples"] = [None if s is None else round(s, 4) for s in result.samples]
        data["nodes"] = list(result.nodes)
        data.update(result.stats())
        data["never"] = result.never
        if result.cap_s is not None:
            data["cap_s"] = result.cap_s
    data.update(result.figures)
    data["violations"] = list(result.violations)
    return data


def results_json(results: Results) -> JSONObject:
    return {
        scenario: {system: figures(r) for system, r in by_system.items()}
        for scenario in (*names.SCENARIOS, *names.DUAL)
        if (by_system := results.outcomes.get(scenario))
    }


def run_json(results: Results) -> JSONObject:
    settings: JSONObject = dict(results.settings.items())
    return {
        "plan": plan_record(results.plan),
        "settings": settings,
        **results.meta,
        "duration_s": round(results.seconds, 1),
    }


def write(results: Results, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / "bench.json": json.dumps(results_json(results), indent=1, default=str) + "\n",
        out / "bench-run.json": json.dumps(run_json(results), indent=1, default=str) + "\n",
        out / "bench.md": markdown(results),
    }
    for path, text in files.items():
        path.write_text(text)
    return list(files)


# ---- Markdown ---------------------------------------------------------------------------------


def seconds(value: Sample, cap: float | None = None, unit: str = "") -> str:
    if value is None:
        return f"never (> {cap:g} s)" if cap is not None else "never"
    return f"{value:.2f}{unit}"


def cell(scenario: str, result: Outcome) -> str:
    f = result.figures
    if scenario in TIMED and "total_requests" in f:
        return load_cell(result)
    if scenario in TIMED:
        stats = result.stats()
        if result.never == len(result.samples):
            return f"{seconds(None, result.cap_s)} (n={len(result.samples)})"
        parts = [seconds(stats[k], result.cap_s) for k in ("p50_s", "p99_s", "max_s")]
        return " / ".join(parts) + f" (n={len(result.samples)})"
    if scenario in PLANNED:
        return (
            f"{f.get('failed_requests')} of {f.get('total_requests')} failed: "
            f"{f.get('failed_in_flight_at_fib_change')} in flight at a FIB change, "
            f"{f.get('failed_other')} other; SIGTERM to out of r1's FIB: "
            + ", ".join(
                f"{node} {'not withdrawn' if s is None else f'{s:.2f} s'}"
                for node, s in zip(result.nodes, result.samples, strict=True)
            )
        )
    if scenario == names.FOOTPRINT:
        text = f"RSS {f.get('rss_mib')} MiB (PSS {f.get('pss_mib')}), CPU {f.get('cpu_percent')} %"
        if result.samples:
            text += f", `announcer status` p50 {_ms(result.stats()['p50_s'])}"
        return text
    return "?"


def load_cell(result: Outcome) -> str:
    """A dual-homed scenario: p50 / p99 / max (a sample that reached the cap shows as
    capped), then the client's failed requests."""
    f, stats = result.figures, result.stats()
    if result.samples:
        parts = [_capped(stats[k], result.cap_s) for k in ("p50_s", "p99_s", "max_s")]
        text = " / ".join(parts) + f" (n={len(result.samples)})"
    else:
        text = "-"
    text += (
        f"; {f.get('failed_requests')} of {f.get('total_requests')} requests failed, "
        f"{f.get('failed_other')} not in flight at a FIB change"
    )
    if "leaf2_lost" in f:
        text += f"; leaf2 lost it {f['leaf2_lost']} times"
    if isinstance(each := f.get("per_vip_s"), dict):
        text += "; " + ", ".join(
            f"{vip} {_capped(v if isinstance(v, float) else None, result.cap_s)}"
            for vip, v in each.items()
        )
    return text


def _capped(value: Sample, cap: float | None) -> str:
    return f"capped at {cap:g}" if value is None and cap is not None else seconds(value)


def _ms(value: Sample) -> str:
    return "never" if value is None else f"{value * 1000:.0f} ms"


HEADINGS = {
    names.READYZ: "readyz-failure: out of r1's FIB, s (p50 / p99 / max)",
    names.RECOVERY: "recovery: back in r1's FIB, s (p50 / p99 / max)",
    names.KILL: "daemon-kill: out, s (p50 / p99 / max)",
    names.FREEZE: "daemon-freeze: out, s (p50 / p99 / max)",
    names.SILENT: "node-silent: out, s (p50 / p99 / max)",
    names.PLANNED: "planned-restart, shutdown delay 3 s",
    names.PLANNED_0: "planned-restart, shutdown delay 0 s",
    names.FOOTPRINT: "footprint (per node, {seconds:g} s steady state)",
    names.CRASH: "apiserver-crash: out of r1's FIB, s (p50 / p99 / max)",
    names.POWER_OFF: "node-power-off: out of both leaves, s (p50 / p99 / max)",
    names.UPLINK: "uplink-cut: out of leaf1, s (p50 / p99 / max)",
    names.LEAF: "leaf-failure: the spine off leaf1, s",
    names.EXABGP_FROZEN: "exabgp-frozen: out of both leaves, s (p50 / p99 / max)",
}


def results_table(results: Results) -> list[str]:
    systems = list(results.settings)
    dual = results.meta.get("network") == "dual-homed"
    lines = ["| scenario | " + " | ".join(f"`{s}`" for s in systems) + " |"]
    lines.append("|---" * (len(systems) + 1) + "|")
    for scenario in (*names.SCENARIOS, *names.DUAL):
        if scenario not in results.outcomes:
            continue
        by_system = results.outcomes[scenario]
        cells = [cell(scenario, by_system[s]) if s in by_system else "-" for s in systems]
        heading = HEADINGS[scenario].format(seconds=results.plan.footprint_seconds)
        row = f"| {heading} | " + " | ".join(cells) + " |"
        lines.append(_on_both_leaves(row) if dual else row)
    return lines


def _on_both_leaves(row: str) -> str:
    """A row of the dual-homed network, timed to both leaves' FIBs (it has no r1)."""
    return row.replace("r1's FIB", "both leaves").replace(": out, s", ": out of both leaves, s")


@dataclass(frozen=True)
class Target:
    label: str
    scenario: str
    value: Callable[[Outcome], float | None]
    bound: Callable[[Results], tuple[float, float]]  # (low, high)
    unit: str = "s"
    needs_samples: bool = False
    system: str = ANNOUNCER  # whose figure it checks
    dual: bool = False  # a target of the dual-homed network only


def _stat(key: str) -> Callable[[Outcome], float | None]:
    return lambda r: r.stats().get(key) if r.samples else None


def _figure(key: str) -> Callable[[Outcome], float | None]:
    def read(r: Outcome) -> float | None:
        value = r.figures.get(key)
        return float(value) if isinstance(value, int | float) else None

    return read


def _recovery_bound(results: Results) -> tuple[float, float]:
    """Back within rise x interval + minimum healthy time, plus 10 %."""
    api = results.settings.get(ANNOUNCER, {}).get("apiserver")
    if not isinstance(api, dict):
        return (0.0, float("inf"))
    values = [api.get(k) for k in ("rise", "interval", "min_healthy")]
    rise, interval, min_healthy = (float(v) if isinstance(v, int | float) else 0.0 for v in values)
    return (0.0, (rise * interval + min_healthy) * 1.1)


def _timed(label: str, scenario: str, key: str, high: float) -> Target:
    return Target(label, scenario, _stat(key), lambda _: (0.0, high), needs_samples=True)


TARGETS = (
    _timed("readyz-failure p99", names.READYZ, "p99_s", 0.6),
    Target("recovery p99, within rise x interval + min healthy + 10 %", names.RECOVERY,
           _stat("p99_s"), _recovery_bound, needs_samples=True),
    Target("planned-restart (delay 3) failures other than in flight", names.PLANNED,
           _figure("failed_other"), lambda _: (0.0, 0.0), ""),
    _timed("daemon-kill max", names.KILL, "max_s", 0.5),
    _timed("daemon-freeze max", names.FREEZE, "max_s", 3.0),
    _timed("node-silent max", names.SILENT, "max_s", 3.5),
    Target("footprint RSS", names.FOOTPRINT, _figure("rss_mib"), lambda _: (0.0, 80.0), "MiB"),
    Target("footprint CPU", names.FOOTPRINT, _figure("cpu_percent"), lambda _: (0.0, 1.0), "%"),
    _timed("`announcer status` p50", names.FOOTPRINT, "p50_s", 0.10),
    _timed("apiserver-crash p99", names.CRASH, "p99_s", 0.25),
)  # fmt: skip


def _dual(label: str, scenario: str, high: float, system: str = ANNOUNCER) -> Target:
    return Target(label, scenario, _stat("p99_s"), lambda _: (0.0, high), needs_samples=True,
                  system=system, dual=True)  # fmt: skip


def _zero(label: str, scenario: str, key: str) -> Target:
    return Target(label, scenario, _figure(key), lambda _: (0.0, 0.0), "", dual=True)


DUAL_TARGETS = (
    _dual("node-power-off p99, out of both leaves", names.POWER_OFF, 1.1),
    _dual(f"node-power-off p99 at 100 ms x 3 (`{BFD_100MS}`)", names.POWER_OFF, 0.5, BFD_100MS),
    _dual("daemon-freeze p99, out of both leaves", names.FREEZE, 1.1),
    _dual("exabgp-frozen p99, out of both leaves", names.EXABGP_FROZEN, 1.5),
    _dual("uplink-cut p99, out of leaf1", names.UPLINK, 1.1),
    _zero("uplink-cut: times leaf2 lost the node", names.UPLINK, "leaf2_lost"),
    _dual("leaf-failure: the spine off leaf1 (its BFD 0.9 s + FIB)", names.LEAF,
          ROUTER_BFD + FIB),
    _zero("leaf-failure failures other than in flight", names.LEAF, "failed_other"),
)  # fmt: skip


def targets_table(results: Results) -> list[str]:
    lines = [
        f"| target | bound | `{ANNOUNCER}` | met | `{HEALTHCHECK}` / `{ANNOUNCER}` |",
        "|---|---|---|---|---|",
    ]
    dual = results.meta.get("network") == "dual-homed"
    for target in (*TARGETS, *DUAL_TARGETS):
        by_system = results.outcomes.get(target.scenario, {})
        if target.system not in by_system or (target.dual and not dual):
            continue
        if target.needs_samples and not by_system[target.system].samples:
            continue  # not measured in this run
        ours = target.value(by_system[target.system])
        theirs = target.value(by_system[HEALTHCHECK]) if HEALTHCHECK in by_system else None
        if theirs is None and HEALTHCHECK in by_system and not by_system[HEALTHCHECK].samples:
            theirs = math.nan  # not measured for the baseline (no such command)
        if HEALTHCHECK not in by_system:
            theirs = math.nan  # the baseline did not run
        low, high = target.bound(results)
        met = ours is not None and low <= ours <= high
        bound = f"{low:g}-{high:g}" if low else f"<= {high:g}"
        lines.append(
            f"| {target.label} | {bound} {target.unit} | {_value(ours, target.unit)} | "
            f"{'yes' if met else '**no**'} | {_ratio(ours, theirs)} |"
        )
    violations = sum(len(r.violations) for s in results.outcomes.values() for r in s.values())
    lines.append(f"| no false withdraw of a healthy node | 0 | {violations} | "
                 f"{'yes' if not violations else '**no**'} | |")  # fmt: skip
    return lines


def _value(value: float | None, unit: str) -> str:
    return "never" if value is None else f"{value:.3g} {unit}".strip()


def _ratio(ours: float | None, theirs: float | None) -> str:
    """theirs / ours: above 1, announcer is that many times faster (or smaller)."""
    if theirs is not None and math.isnan(theirs):
        return "-"
    if theirs is None:
        return "theirs: never" if ours is not None else "both never"
    if ours is None:
        return "ours: never"
    if ours == 0:
        return "both 0" if theirs == 0 else f"{theirs:.3g} vs 0"
    return f"{theirs / ours:.2g}"


def markdown(results: Results) -> str:
    meta = results.meta
    machine, software = meta.get("machine", {}), meta.get("software", {})
    lines = ["# announcer lab bench", "", *results_table(results), "", "## announcer's targets", ""]
    lines += targets_table(results)
    lines += ["", "## Where it ran", "", _describe(machine), _describe(software), ""]
    lines.append(
        f"Took {results.seconds / 60:.1f} min; plan: {_describe(plan_record(results.plan))}."
    )
    return "\n".join(lines) + "\n"


def _describe(value: JSONValue | object) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)

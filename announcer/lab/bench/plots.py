"""The benchmark's PNG plots (matplotlib, the `bench` extra).

- one per timed scenario: each system's samples as points over a box plot, "never" shown in a
  band above the times, the median written beside each box;
- the footprint: memory and CPU per system, each node a point, the targets as lines;
- one per planned restart: a row per system, the client's requests per 100 ms stacked by the
  node that answered, failures in red (dark grey when in flight at a FIB change), with each
  node's SIGTERM, listener close and ready marked, and r1's FIB changes as triangles.

It must not measure nor decide what passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from announcer.lab.bench import outcome as names
from announcer.lab.bench.outcome import Outcome, Timeline

if TYPE_CHECKING:
    from matplotlib.axes import Axes

NODE_COLOURS = {"cp1": "#4C72B0", "cp2": "#DD8452", "cp3": "#55A868"}
FAILED, IN_FLIGHT = "#C44E52", "#3A3A3A"
SYSTEM_COLOURS = ("#4C72B0", "#C44E52", "#8172B2", "#55A868", "#CCB974")
BIN = 0.1
TITLES = {
    names.READYZ: "readyz-failure: apiserver etcd-down until the node leaves r1's FIB",
    names.RECOVERY: "recovery: apiserver ready again until the node is back in r1's FIB",
    names.KILL: "daemon-kill: health process SIGKILLed until the node leaves r1's FIB",
    names.FREEZE: "daemon-freeze: health process SIGSTOPped until the node leaves r1's FIB",
    names.SILENT: "node-silent: the node's link drops everything until r1 drops the path",
    names.CRASH: "apiserver-crash: the apiserver process dies until the node leaves r1's FIB",
    names.PLANNED: "planned-restart, shutdown-delay-duration 3 s: SIGTERM until the node leaves",
    names.PLANNED_0: "planned-restart, shutdown-delay-duration 0 s: SIGTERM until the node leaves",
    names.POWER_OFF: "node-power-off: links silent, processes stopped, until out of both leaves",
    names.UPLINK: "uplink-cut: the node's link to leaf1 silent until leaf1 drops the path",
    names.LEAF: "leaf-failure: leaf1 silent, its FRR killed, until the spine stops using it",
    names.EXABGP_FROZEN: "exabgp-frozen: ExaBGP SIGSTOPped until out of both leaves",
}


def _pyplot() -> ModuleType:
    """matplotlib's pyplot, imported on first use: it is an optional dependency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_all(outcomes: Mapping[str, Mapping[str, Outcome]], out: Path) -> list[Path]:
    """Every plot the outcomes allow; the files written."""
    written = []
    for scenario, title in TITLES.items():
        by_system = {s: r for s, r in outcomes.get(scenario, {}).items() if r.samples}
        if by_system:
            written.append(distribution(title, by_system, out / f"{scenario}.png"))
    if foot := outcomes.get(names.FOOTPRINT):
        written.append(footprint(foot, out / f"{names.FOOTPRINT}.png"))
    for scenario in (names.PLANNED, names.PLANNED_0):
        runs = {s: r.timeline for s, r in outcomes.get(scenario, {}).items() if r.timeline}
        if runs:
            written.append(timelines(runs, out / f"{scenario}-timeline.png"))
    return written


# ---- distributions ---------------------------------------------------------------------------


def distribution(title: str, by_system: Mapping[str, Outcome], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    finite = [s for r in by_system.values() for s in r.samples if s is not None]
    top = max(finite, default=1.0) * 1.12 or 1.0
    never_at = top * 1.08
    any_never = any(r.never for r in by_system.values())
    for x, result in enumerate(by_system.values()):
        colour = SYSTEM_COLOURS[x % len(SYSTEM_COLOURS)]
        times = [s for s in result.samples if s is not None]
        if times:
            box = ax.boxplot([times], positions=[x], widths=0.5, showfliers=False,
                             patch_artist=True, medianprops={"color": "black"})  # fmt: skip
            box["boxes"][0].set(facecolor=colour, alpha=0.18, edgecolor=colour)
        jitter = [x + 0.18 * math.sin(i * 2.4) for i in range(len(times))]
        ax.scatter(jitter, times, s=22, color=colour, alpha=0.85, zorder=3)
        if result.never:
            nx = [x + 0.15 * math.sin(i * 2.4) for i in range(result.never)]
            ax.scatter(nx, [never_at] * result.never, marker="x", s=40, color=colour, zorder=3)
        ax.annotate(_median_label(result), (x + 0.3, _median(result) or never_at),
                    fontsize=9, va="center")  # fmt: skip
    ax.set_xticks(range(len(by_system)), list(by_system), fontsize=10)
    ax.set_ylabel("seconds")
    if any_never:
        cap = next((r.cap_s for r in by_system.values() if r.cap_s is not None), None)
        label = "not\nwithdrawn" if cap is None else f"never\n(> {cap:g} s)"
        ax.axhspan(top, never_at * 1.06, color="#eeeeee", zorder=0)
        ax.text(-0.45, never_at, label, fontsize=9, va="center", color="#555")
        ax.set_ylim(0, never_at * 1.06)
    else:
        ax.set_ylim(0, top)
    ax.set_xlim(-0.6, len(by_system) - 0.1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _median(result: Outcome) -> float | None:
    return result.stats().get("p50_s")


def _median_label(result: Outcome) -> str:
    median = _median(result)
    text = "median never" if median is None else f"median {median:.2f} s"
    return f"{text}\nn={len(result.samples)}"


# ---- footprint --------------------------------------------------------------------------------


def footprint(by_system: Mapping[str, Outcome], path: Path) -> Path:
    plt = _pyplot()
    fig, (rss, cpu) = plt.subplots(1, 2, figsize=(10, 4.6), dpi=110)
    for axis, key, label, target in (
        (rss, "rss_mib", "RSS, MiB (mean over the window)", 80.0),
        (cpu, "cpu_percent", "CPU, % of one core", 1.0),
    ):
        _footprint_bars(axis, by_system, key)
        axis.axhline(target, color="#888", linestyle="--", linewidth=1)
        axis.text(-0.45, target, f"announcer's target {target:g}", fontsize=8,
                  va="bottom", ha="left", color="#555")  # fmt: skip
        axis.set_xlim(-0.5, len(by_system) - 0.5)
        axis.set_ylim(0, axis.get_ylim()[1] * 1.1)
        axis.set_title(label, fontsize=11)
        axis.grid(axis="y", alpha=0.3)
    window = next(iter(by_system.values())).figures.get("seconds")
    fig.suptitle(f"footprint: everything each system runs on a node, healthy, {window} s",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _footprint_bars(axis: Axes, by_system: Mapping[str, Outcome], key: str) -> None:
    for x, result in enumerate(by_system.values()):
        value = result.figures.get(key)
        colour = SYSTEM_COLOURS[x % len(SYSTEM_COLOURS)]
        if isinstance(value, int | float):
            axis.bar(x, value, color=colour, alpha=0.35, width=0.6)
            axis.annotate(f"{value:g}", (x - 0.12, value), xytext=(0, 4), ha="center",
                          textcoords="offset points", fontsize=10)  # fmt: skip
        per_node = result.figures.get("per_node")
        nodes = per_node.values() if isinstance(per_node, dict) else []
        values = [n.get(key) for n in nodes if isinstance(n, dict)]
        points = [float(p) for p in values if isinstance(p, int | float)]
        axis.scatter([x + 0.18] * len(points), points, color=colour, s=18, zorder=3)
    axis.set_xticks(range(len(by_system)), [s.replace("-", "-\n", 1) for s in by_system],
                    fontsize=9)  # fmt: skip


# ---- planned restart timeline ------------------------------------------------------------------


def timelines(runs: Mapping[str, Timeline], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(runs), 1, figsize=(13, 3.3 * len(runs)), dpi=110, squeeze=False, sharex=True
    )
    for axis, (system, run) in zip(axes[:, 0], runs.items(), strict=True):
        _timeline(axis, run)
        failed = sum(1 for r in run.requests if not r.ok)
        axis.set_title(
            f"{system}: {failed} of {len(run.requests)} requests failed "
            f"({len(run.in_flight)} in flight at a FIB change)", fontsize=10, loc="left",
        )  # fmt: skip
    first = next(iter(runs.values()))
    fig.suptitle(
        f"planned restart of each apiserver, shutdown-delay-duration {first.delay:g} s: "
        "client requests per 100 ms by answering node", fontsize=11,
    )  # fmt: skip
    axes[-1, 0].set_xlabel("seconds since the client started")
    colours = (*NODE_COLOURS.values(), FAILED, IN_FLIGHT)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    labels = [f"answered by {n}" for n in NODE_COLOURS]
    labels += ["failed", "failed, in flight at a FIB change"]
    for marker, text in (("v", "node leaves r1's FIB"), ("^", "node back in r1's FIB")):
        handles.append(plt.Line2D([], [], marker=marker, linestyle="", color="#888",
                                  markeredgecolor="black", markersize=7))  # fmt: skip
        labels.append(text)
    fig.legend(handles, labels, loc="lower center", ncol=7, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
    return path


def _timeline(axis: Axes, run: Timeline) -> None:
    bins = max(1, math.ceil((run.ended - run.started) / BIN))
    stacks: dict[str, list[int]] = {key: [0] * bins for key in (*NODE_COLOURS, "failed", "flight")}
    for index, request in enumerate(run.requests):
        slot = min(bins - 1, max(0, int((request.start - run.started) / BIN)))
        key = request.node if request.ok and request.node in NODE_COLOURS else "failed"
        key = "flight" if index in run.in_flight else key
        stacks[key][slot] += 1
    xs = [i * BIN for i in range(bins)]
    bottom = [0] * bins
    colours = {**NODE_COLOURS, "failed": FAILED, "flight": IN_FLIGHT}
    for key, counts in stacks.items():
        axis.bar(xs, counts, width=BIN, bottom=bottom, color=colours[key], align="edge",
                 linewidth=0)  # fmt: skip
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    _events(axis, run, top=max(bottom, default=1))
    axis.set_xlim(0, max(axis.get_xlim()[1], bins * BIN))
    axis.set_ylabel("requests / 100 ms")


_STYLE = {"shutdown": ("-", "SIGTERM"), "closed": ("--", "closed"), "ready": (":", "ready")}


def _events(axis: Axes, run: Timeline, *, top: int) -> None:
    axis.set_ylim(0, top * 1.45)
    for event in run.events:
        x = event.at - run.started
        colour = NODE_COLOURS.get(event.node, "#444")
        if event.what in _STYLE:
            style, label = _STYLE[event.what]
            axis.axvline(x, color=colour, linestyle=style, linewidth=1.1)
            level = {"shutdown": 1.36, "closed": 1.26, "ready": 1.26}[event.what]
            axis.text(x, top * level, f" {event.node} {label}", fontsize=7.5, color=colour,
                      va="center")  # fmt: skip
        elif event.what in ("in", "out"):
            marker = "v" if event.what == "out" else "^"
            axis.scatter([x], [top * 1.13], marker=marker, color=colour, s=42, zorder=4,
                         edgecolors="black", linewidths=0.5)  # fmt: skip

"""What a process tree costs, read from /proc: resident memory and CPU time.

`tree(root, candidates)` is the root and its descendants among `candidates` (a node's
processes). `sample(pids)` reads, per process, VmRSS and the proportional set size (PSS:
shared pages divided among their users, so a total is not inflated by the interpreter pages
every Python process maps) and its CPU ticks: utime + stime + cutime + cstime. Summed over a
tree that keeps its root, that total only grows: a child's time moves into its parent's
cutime when the parent reaps it, so the short-lived curls of a checker are counted too.
`Usage.between(first, last, seconds)` turns two samples into the share of one core used.

It must not find processes by role (`systems`) nor decide how long to sample (`scenarios`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from announcer.status_protocol import JSONObject

_TICKS = os.sysconf("SC_CLK_TCK")
_KIB = 1024


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    pids: frozenset[int]
    rss_kib: int
    pss_kib: int
    ticks: int


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def tree(root: int, candidates: Iterable[int]) -> frozenset[int]:
    """`root` and every descendant of it among `candidates`."""
    parents = {pid: parent_of(pid) for pid in candidates}
    found = {root}
    grew = True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in found} - found
        found |= new
        grew = bool(new)
    return frozenset(found)


def _ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime, stime, cutime, cstime are fields 14-17 of proc(5); here counted from field 3.
    return sum(int(value) for value in fields[11:15])


def _memory(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def sample(pids: Iterable[int], at: float) -> Sample:
    """One reading of `pids` (those gone meanwhile are left out)."""
    seen: set[int] = set()
    rss = pss = ticks = 0
    for pid in pids:
        try:
            pid_ticks = _ticks(pid)
            pid_rss, pid_pss = _memory(pid)
        except (OSError, ValueError, IndexError):
            continue
        seen.add(pid)
        rss, pss, ticks = rss + pid_rss, pss + pid_pss, ticks + pid_ticks
    return Sample(at, frozenset(seen), rss, pss, ticks)


@dataclass(frozen=True, slots=True)
class Usage:
    """A tree over a window: memory averaged over the samples (and its peak), CPU as a
    percentage of one core."""

    seconds: float
    rss_mib: float
    rss_mib_max: float
    pss_mib: float
    cpu_percent: float
    processes: int

    @classmethod
    def between(cls, samples: list[Sample]) -> Usage:
        if len(samples) < 2:
            raise ValueError("a usage needs at least two samples")
        first, last = samples[0], samples[-1]
        seconds = last.at - first.at
        cpu = (last.ticks - first.ticks) / _TICKS / seconds * 100 if seconds > 0 else 0.0
        return cls(
            seconds=seconds,
            rss_mib=sum(s.rss_kib for s in samples) / len(samples) / _KIB,
            rss_mib_max=max(s.rss_kib for s in samples) / _KIB,
            pss_mib=sum(s.pss_kib for s in samples) / len(samples) / _KIB,
            cpu_percent=max(0.0, cpu),
            processes=max(len(s.pids) for s in samples),
        )

    def figures(self) -> JSONObject:
        return {
            "rss_mib": round(self.rss_mib, 1),
            "rss_mib_max": round(self.rss_mib_max, 1),
            "pss_mib": round(self.pss_mib, 1),
            "cpu_percent": round(self.cpu_percent, 2),
            "processes": self.processes,
        }

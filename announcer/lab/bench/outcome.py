"""What one scenario measured for one system, and the statistics the report shows.

An `Outcome` holds timing samples in seconds (None: the change never came within `cap_s`),
the node each sample was taken on, further figures (requests, memory, CPU, ...) and the
invariant violations seen meanwhile (a healthy node withdrawn, a foreign route). For the
planned restart it also carries the raw `Timeline` the plots draw. `percentile` treats a
"never" as larger than any time, so a p99 over samples with a never is itself a never.

It must not measure, print or plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from announcer.lab.bench.client import Request
from announcer.status_protocol import JSONObject

READYZ = "readyz-failure"
RECOVERY = "recovery"
PLANNED = "planned-restart"
PLANNED_0 = "planned-restart-delay-0"
KILL = "daemon-kill"
FREEZE = "daemon-freeze"
SILENT = "node-silent"
FOOTPRINT = "footprint"
CRASH = "apiserver-crash"
SCENARIOS = (READYZ, RECOVERY, CRASH, PLANNED, PLANNED_0, KILL, FREEZE, SILENT, FOOTPRINT)
# The dual-homed network's own scenarios (`network`); it runs READYZ, FREEZE and PLANNED too.
POWER_OFF = "node-power-off"
UPLINK = "uplink-cut"
LEAF = "leaf-failure"
EXABGP_FROZEN = "exabgp-frozen"
DUAL = (POWER_OFF, UPLINK, LEAF, EXABGP_FROZEN)

Sample = float | None


@dataclass(frozen=True, slots=True)
class Event:
    """A moment of a run: a fault the benchmark injected, or a change it saw in r1's FIB."""

    at: float
    node: str
    what: str  # shutdown, closed, starting, ready; in, out (r1's FIB)


@dataclass(frozen=True)
class Timeline:
    """A planned restart as the client saw it, for the timeline plot."""

    started: float
    ended: float
    requests: tuple[Request, ...]
    in_flight: frozenset[int]  # indexes of failed requests in flight at a FIB change
    events: tuple[Event, ...]
    delay: float


@dataclass(frozen=True)
class Outcome:
    samples: tuple[Sample, ...] = ()
    nodes: tuple[str, ...] = ()
    cap_s: float | None = None
    figures: JSONObject = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    timeline: Timeline | None = None

    @property
    def never(self) -> int:
        return sum(1 for s in self.samples if s is None)

    def stats(self) -> dict[str, Sample]:
        """p50, p99 and max in seconds (None: never), rounded to the millisecond."""
        if not self.samples:
            return {}
        return {
            "p50_s": _round(percentile(self.samples, 50)),
            "p99_s": _round(percentile(self.samples, 99)),
            "max_s": _round(percentile(self.samples, 100)),
        }


def percentile(samples: Sequence[Sample], q: float) -> Sample:
    """The q-th percentile (linear interpolation between closest ranks); None ranks last."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(math.inf if s is None else s for s in samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    a, b = ordered[low], ordered[high]
    if low == high:
        value = a
    elif math.isinf(b):
        value = math.inf  # between a time and a never: a never
    else:
        value = a + (b - a) * (rank - low)
    return None if math.isinf(value) else value


def _round(value: Sample) -> Sample:
    return None if value is None else round(value, 3)

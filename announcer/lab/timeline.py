"""A node's presence in r1's FIB as a step function, and I1, I2 and I4 evaluated over it.

`presence(histories, gateways)` merges the watcher's per-VIP nexthop histories into steps
`(from, in for every VIP, in for any VIP)`. The evaluation is pure: given the steps, what the
matrix expected (`Expectation`: IN, OUT or FREE from `at`, reached by `deadline`) and what the
daemon said (`Sample`), it returns `Violation`s. A node counts as out of r1's FIB when it is
out for every VIP, and as in when it is in for every VIP; absences up to `gap` long are not
withdrawals (see `bounds.GAP`). Everything is linear or logarithmic in the history's length,
so a long soak stays cheap to re-check.

It must not read clocks, sockets or the lab.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from announcer.lab.fib import IPAddress
from announcer.lab.watch import FibChange

Step = tuple[float, bool, bool]
ALL, ANY = 1, 2
Interval = tuple[float, float]


class Expect(enum.Enum):
    IN = "in"
    OUT = "out"
    FREE = "free"


@dataclass(frozen=True, slots=True)
class Expectation:
    node: str
    expect: Expect
    at: float
    deadline: float
    why: str


@dataclass(frozen=True, slots=True, order=True)
class Violation:
    at: float
    invariant: str
    node: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} {self.node}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Sample:
    """What a node's daemon said at `at`: True (in r1's FIB), False (nothing announced),
    None (unreachable, or in between: draining, stopping, a session down)."""

    at: float
    claims_in: bool | None


def presence(
    histories: Iterable[Sequence[FibChange]], gateways: frozenset[IPAddress]
) -> list[Step]:
    """Merge per-VIP histories into the node's steps (changes at one instant count once)."""
    lists = list(histories)
    changes = sorted((c.at, i, bool(gateways & c.nexthops)) for i, h in enumerate(lists) for c in h)
    here = [False] * len(lists)
    steps: list[Step] = []
    for at, group in itertools.groupby(changes, key=lambda change: change[0]):
        for _, index, inside in group:
            here[index] = inside
        if not steps or steps[-1][1:] != (all(here), any(here)):
            steps.append((at, all(here), any(here)))
    return steps


def value(steps: Sequence[Step], index: int, t: float) -> bool:
    position = bisect.bisect_right(steps, t, key=lambda step: step[0])
    return bool(steps[position - 1][index]) if position else False


def runs(
    steps: Sequence[Step], index: int, wanted: bool, start: float, end: float
) -> list[Interval]:
    """Maximal intervals within [start, end) where the steps' `index` field is `wanted`."""
    found: list[Interval] = []
    opened = start if value(steps, index, start) == wanted else None
    for step in steps[bisect.bisect_right(steps, start, key=lambda s: s[0]) :]:
        if step[0] >= end:
            break
        if step[index] == wanted and opened is None:
            opened = step[0]
        elif step[index] != wanted and opened is not None:
            found.append((opened, step[0]))
            opened = None
    if opened is not None and opened < end:
        found.append((opened, end))
    return found


def first(steps: Sequence[Step], index: int, wanted: bool, since: float) -> float | None:
    if value(steps, index, since) == wanted:
        return since
    for step in steps[bisect.bisect_right(steps, since, key=lambda s: s[0]) :]:
        if step[index] == wanted:
            return step[0]
    return None


def check_expectations(
    node: str,
    steps: Sequence[Step],
    expectations: Sequence[Expectation],
    *,
    until: float,
    gap: float,
) -> tuple[list[Violation], list[Interval]]:
    """I1 (OUT windows) and I2 (IN windows); also the intervals the node had to be in."""
    found: list[Violation] = []
    required: list[Interval] = []
    ordered = sorted(expectations, key=lambda e: e.at)
    for i, e in enumerate(ordered):
        end = min(until, ordered[i + 1].at) if i + 1 < len(ordered) else until
        if e.expect is Expect.FREE or end <= e.at:
            continue
        inside = e.expect is Expect.IN
        found += _window(node, steps, e, end, gap, inside=inside)
        if inside and (back := first(steps, ALL, True, e.at)) is not None and back < end:
            required.append((back, end))
    return found, required


def _window(
    node: str, steps: Sequence[Step], e: Expectation, end: float, gap: float, *, inside: bool
) -> list[Violation]:
    code, index = ("I2", ALL) if inside else ("I1", ANY)
    target = "in" if inside else "out of"
    bound = e.deadline - e.at
    reached = first(steps, index, inside, e.at)
    if reached is None or reached >= end:
        late = end > e.deadline
        return (
            [Violation(e.at, code, node, f"{e.why}: not {target} r1's FIB within {bound:.2f} s")]
            if late
            else []
        )
    found = []
    if reached > e.deadline + 1e-9:
        detail = f"{e.why}: {target} r1's FIB after {reached - e.at:.2f} s (bound {bound:.2f})"
        found.append(Violation(e.at, code, node, detail))
    for a, b in runs(steps, index, not inside, reached, end):
        if b - a > gap:
            what = "withdrawn" if inside else "back in r1's FIB"
            detail = f"{e.why}: {what} at +{a - e.at:.2f} s for {b - a:.2f} s"
            found.append(Violation(a, code, node, detail))
    return found


def check_blackholes(
    vips: Mapping[str, Sequence[FibChange]],
    required: Sequence[Interval],
    *,
    until: float,
    gap: float,
) -> list[Violation]:
    """I2: a VIP without any nexthop for longer than `gap` while some node had to be in."""
    found = []
    for vip, history in vips.items():
        steps = [(c.at, bool(c.nexthops), bool(c.nexthops)) for c in history]
        for start, end in runs(steps, ANY, False, 0.0, until):
            overlap = max((min(end, b) - max(start, a) for a, b in required), default=0.0)
            if overlap > gap:
                detail = f"blackhole: no nexthop for {end - start:.3f} s while a node should be in"
                found.append(Violation(start, "I2", vip, detail))
    return found


def check_status(
    node: str, steps: Sequence[Step], samples: Sequence[Sample], *, bound: float
) -> list[Violation]:
    """I4: runs of samples disagreeing with r1's FIB for longer than `bound`."""
    found = []
    run: list[Sample] = []
    for sample in [*samples, Sample(float("inf"), None)]:
        fib = value(steps, ALL if sample.claims_in else ANY, sample.at)
        if sample.claims_in is not None and sample.claims_in != fib:
            run.append(sample)
            continue
        if run and run[-1].at - run[0].at > bound:
            said = "announced" if run[0].claims_in else "not announced"
            took = run[-1].at - run[0].at
            detail = f"status said {said} but r1's FIB disagreed for {took:.2f} s"
            found.append(Violation(run[0].at, "I4", node, detail))
        run = []
    return found

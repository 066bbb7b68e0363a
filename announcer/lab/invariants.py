"""The invariants of DESIGN.md's guarantees, checked over the routers' FIB history and the
nodes' status. "r1's FIB" below is, in a lab with several routers, every edge router's FIB
(`watchset`): a node is in when every leaf has its path, out when no leaf has.

- I1: a node whose apiserver is not ready, or which is drained, stopping or dead, leaves r1's
  FIB by its deadline and stays out (`leave`);
- I2: a node expected in (ready, not drained, alive) is never missing from r1's FIB (no false
  withdraw), and while one is expected in no VIP is left without a nexthop (no blackhole)
  (`stay`, `rejoin`);
- I3: nothing but the configured VIPs ever comes from a control-plane node (the watcher's
  foreign routes; r1's BGP table is looked at by the trial);
- I4: what a reachable daemon says (`claims_in` of its status) agrees with r1's FIB: no
  disagreement lasts longer than `Bounds.status`.

The matrix tells the `Checker` per node what to expect from when, with its bound (IN: in r1's
FIB for every VIP by the deadline, then never out; OUT: out for every VIP by the deadline, then
never back; FREE: either, for faults that reset everyone's sessions by nature). `check()`
evaluates the whole timeline up to now (`timeline`), so nothing that happened between two
looks is missed, and returns each violation once. It must not inject faults nor sample.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from announcer.lab import timeline
from announcer.lab.bounds import Bounds
from announcer.lab.fib import IPAddress, IPNetwork
from announcer.lab.timeline import ALL, ANY, Expect, Expectation, Interval, Sample, Step, Violation
from announcer.lab.watchset import RouterWatch, Watch

__all__ = ["Checker", "Expect", "Sample", "Violation", "claims_in"]
_ROUTER = "r1"  # how violations name the routers' side, whichever routers it is


class Checker:
    """Expectations and status samples per node, and I1-I4 over the watcher's history."""

    def __init__(
        self, watcher: Watch, gateways: Mapping[str, frozenset[IPAddress]], bounds: Bounds
    ) -> None:
        self.watcher, self.bounds = watcher, bounds
        self.gateways = dict(gateways)
        self.vips: tuple[IPNetwork, ...] = tuple(watcher.prefixes)
        self._lock = threading.Lock()
        self._expectations: dict[str, list[Expectation]] = {node: [] for node in gateways}
        self._samples: dict[str, list[Sample]] = {node: [] for node in gateways}
        self._reported: set[tuple[float, str, str]] = set()

    # ---- what the matrix expects and the daemons say ------------------------------------

    def expect(self, node: str, expect: Expect, *, at: float, within: float, why: str) -> None:
        with self._lock:
            self._expectations[node].append(Expectation(node, expect, at, at + within, why))

    def leave(self, node: str, *, at: float, within: float, why: str) -> None:
        self.expect(node, Expect.OUT, at=at, within=within, why=why)

    def rejoin(self, node: str, *, at: float, within: float, why: str) -> None:
        self.expect(node, Expect.IN, at=at, within=within, why=why)

    def stay(self, node: str, *, at: float, why: str) -> None:
        self.expect(node, Expect.IN, at=at, within=0.0, why=why)

    def free(self, node: str, *, at: float, why: str) -> None:
        self.expect(node, Expect.FREE, at=at, within=0.0, why=why)

    def note(self, node: str, sample: Sample) -> None:
        """Record what `node`'s daemon said."""
        with self._lock:
            self._samples[node].append(sample)

    # ---- what r1 shows ------------------------------------------------------------------

    def presence(self, node: str) -> list[Step]:
        watcher = self.watcher
        if isinstance(watcher, RouterWatch):  # one history per leaf and VIP
            histories = watcher.histories()
        else:
            histories = [watcher.history(vip) for vip in self.vips]
        return timeline.presence(histories, self.gateways[node])

    def left_at(self, node: str, since: float) -> float | None:
        """When `node` was first out of r1's FIB for every VIP, at or after `since`."""
        return timeline.first(self.presence(node), ANY, False, since)

    def back_at(self, node: str, since: float) -> float | None:
        """When `node` was first in r1's FIB for every VIP, at or after `since`."""
        return timeline.first(self.presence(node), ALL, True, since)

    def is_in(self, node: str) -> bool:
        """Whether `node` is in r1's FIB for every VIP right now."""
        return timeline.value(self.presence(node), ALL, float("inf"))

    def withdrawals(self, node: str, since: float, until: float) -> list[Interval]:
        """Times in [since, until) `node` was missing for some VIP longer than the gap."""
        runs = timeline.runs(self.presence(node), ALL, False, since, until)
        return [(a, b) for a, b in runs if b - a > self.bounds.gap]

    def absences(self, node: str, since: float, until: float) -> list[Interval]:
        """Times in [since, until) `node` was out of r1's FIB for every VIP."""
        return timeline.runs(self.presence(node), ANY, False, since, until)

    def changes(self, node: str, since: float, until: float) -> int:
        """How often `node` entered or left r1's FIB (for any VIP) in (since, until)."""
        steps = self.presence(node)
        runs = timeline.runs(steps, ANY, True, since, until)
        runs += timeline.runs(steps, ANY, False, since, until)
        return max(0, len(runs) - 1)

    # ---- evaluation ---------------------------------------------------------------------

    def check(self, until: float | None = None) -> list[Violation]:
        """Violations up to `until` (default: now) not returned before, oldest first."""
        until = time.monotonic() if until is None else until
        with self._lock:
            expectations = {node: list(e) for node, e in self._expectations.items()}
            samples = {node: list(s) for node, s in self._samples.items()}
        found: list[Violation] = []
        required: list[Interval] = []
        gap = self.bounds.gap
        for node in self.gateways:
            steps = self.presence(node)
            violations, must_be_in = timeline.check_expectations(
                node, steps, expectations[node], until=until, gap=gap
            )
            found += violations
            required += must_be_in
            found += timeline.check_status(node, steps, samples[node], bound=self.bounds.status)
        histories = {str(vip): self.watcher.history(vip) for vip in self.vips}
        found += timeline.check_blackholes(histories, required, until=until, gap=gap)
        for route in self.watcher.foreign():
            via = ", ".join(sorted(map(str, route.gateways)))
            detail = f"foreign route {route.prefix} via {via}"
            found.append(Violation(route.at, "I3", _ROUTER, detail))
        # One report per violation, however much longer it lasted since the previous look.
        fresh = {(v.at, v.invariant, v.node): v for v in found}
        new = sorted(v for key, v in fresh.items() if key not in self._reported)
        self._reported.update(fresh)
        return new


def claims_in(snapshot: Mapping[str, object]) -> bool | None:
    """What a status snapshot says about r1's FIB: True when the daemon is running with every
    VIP announced and every session up, False when nothing is announced, None otherwise."""
    vips = snapshot.get("vips")
    neighbors = snapshot.get("neighbors")
    vip_list = vips if isinstance(vips, list) else []
    announced = [isinstance(v, dict) and v.get("announced") is True for v in vip_list]
    sessions = (
        {n.get("state") for n in neighbors if isinstance(n, dict)}
        if isinstance(neighbors, list)
        else set()
    )
    if not any(announced):
        return False
    running = snapshot.get("lifecycle") == "running"
    return True if running and all(announced) and sessions == {"up"} else None

"""The vocabulary the fault matrix is written in: the `Fault` type and the shapes faults share.

A fault runs on one node of a `Trial` and returns its `Finding`s; before it injects, it tells
the checker what r1's FIB must show and by when (`leave`: I1; `rejoin`/`stay`: I2; `free`: a
fault that resets sessions by nature), so the invariants are checked continuously whatever
the findings say. The shapes: an apiserver state out and back (`apiserver`), a fault every
node must ride out (`stays`), one that drops the node's sessions by nature and must heal
(`drop_and_return`), an undo with its rise bound (`back`). `Fault.expected` is a template
over the node's `Bounds` and the constants of `bounds`.

It must not list the faults (`matrix` does) nor run them one after another.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from announcer.lab import faults
from announcer.lab.bounds import BGPD_START, DAEMON_KILLED, EXABGP_BACK, SESSION_BACK, Bounds
from announcer.lab.trial import Finding, Trial, timed

Run = Callable[[Trial, str], list[Finding]]
# Which lab a fault is for: any; one router (the simple lab: a cut link is the node's only
# path); several edge routers (the dual-homed lab: leaves and a spine).
ANY_NETWORK, ONE_ROUTER, DUAL_HOMED = "any", "one router", "dual-homed"


@dataclass(frozen=True)
class Fault:
    name: str
    node: str  # where the matrix injects it; the soak picks any control-plane node
    expected: str  # a str.format template over `Bounds` fields and the constants above
    run: Run
    shared: bool = False  # concerns every node: the soak keeps `node` rather than pick one
    network: str = ANY_NETWORK  # the labs it applies to (see above)
    needs_bfd: bool = False  # only meaningful once the nodes' daemons run BFD

    def fits(self, edge_routers: int) -> bool:
        """Whether the fault applies to a lab with that many edge routers."""
        if self.network == ONE_ROUTER:
            return edge_routers == 1
        return self.network != DUAL_HOMED or edge_routers > 1

    def describe(self, bounds: Bounds) -> str:
        values = dataclasses.asdict(bounds) | {"killed": DAEMON_KILLED, "exabgp": EXABGP_BACK}
        values |= {"session": SESSION_BACK, "bgpd": SESSION_BACK + BGPD_START}
        return self.expected.format(**values)


def now() -> float:
    return time.monotonic()


# ---- shapes shared by several faults --------------------------------------------------------


def back(t: Trial, node: str, undo: Callable[[], object], bound: float) -> Finding:
    t1 = now()
    undo()
    t.check.rejoin(node, at=t1, within=bound, why="undone")
    return t.until_in(node, t1, bound)


def ready(t: Trial, node: str) -> Callable[[], None]:
    return lambda: faults.set_apiserver(t.topology, node, "ready")


def drop_and_return(t: Trial, node: str, t0: float, bound: float) -> list[Finding]:
    """For a fault that takes the node's sessions down by nature: it may leave at once, and
    must be back within `bound` of `t0`."""
    t.check.free(node, at=t0, why="sessions reset")
    dropped = t.until_out(node, t0, 1.0, "dropped")
    left = t.check.left_at(node, t0) or now()
    t.check.rejoin(node, at=left, within=max(0.0, t0 + bound - left), why="sessions back")
    t.until_in(node, left, bound)
    back_at = t.check.back_at(node, left)
    return [
        dataclasses.replace(dropped, ok=True),  # informative: the drop is the fault's nature
        timed(f"{node} back", None if back_at is None else back_at - t0, bound),
    ]


def probe_status(t: Trial, node: str, code: int) -> Finding:
    probe = t.status(node).get("last_probe")
    probe = probe if isinstance(probe, dict) else {}
    return Finding(f"reason {probe.get('reason')!r}", probe.get("status") == code)


def apiserver(
    *states: str,
    bound: str = "probe_failure",
    ms: float = 0.0,
    code: int | None = None,
    delay: float = 0.0,
) -> Run:
    """The apiserver goes through `states` (the last one stays): out within the bound (a
    field of `Bounds`), back within the rise bound once ready again."""

    def run(t: Trial, node: str) -> list[Finding]:
        limit = getattr(t.bounds[node], bound)
        t0 = now()
        for state in states:
            faults.set_apiserver(t.topology, node, state, ms=ms, delay=delay)
        t.check.leave(node, at=t0, within=limit, why=states[-1])
        found = [t.until_out(node, t0, limit)]
        if code is not None:
            found.append(probe_status(t, node, code))
        if delay:
            left = t.check.left_at(node, t0)
            in_time = left is not None and left - t0 < delay
            found.append(Finding(f"before the listener closed ({delay:g} s)", in_time))
        return [*found, back(t, node, ready(t, node), t.bounds[node].rise)]

    return run


def stays(
    t: Trial, seconds: float, inject: Callable[[], object], undo: Callable[[], object]
) -> list[Finding]:
    """A fault every node must ride out: nobody withdrawn for `seconds`."""
    inject()
    try:
        return [t.observe(seconds)]
    finally:
        undo()


def wait_for(what: Callable[[], object], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until `what()` is truthy, None if it is not within `timeout` (a poll)."""
    start = now()
    while not what():
        if now() - start > timeout:
            return None
        time.sleep(step)
    return now() - start


def new_pid(t: Trial, node: str, role: str, old: int) -> bool:
    found = faults.find(t.topology, node, role)
    return found is not None and found.pid != old


def restarts(t: Trial, node: str) -> int:
    exabgp = t.status(node).get("exabgp")
    value = exabgp.get("restarts") if isinstance(exabgp, dict) else None
    return value if isinstance(value, int) else -1

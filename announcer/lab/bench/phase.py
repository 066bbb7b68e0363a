"""One system on every control-plane node, under watch: the unit the scenarios run in.

`Phase(topology, system)` opens a watch on every router's FIB (`watchset.watch_routers`: r1's
`FibWatcher` in the simple lab; both leaves' and the spine's in the dual-homed one) for the
VIPs the system announces and an `invariants.Checker` over it, so that every timing is read
from the routers' kernel FIB history (netlink events stamped with `time.monotonic()`), never
by polling. A node counts as out when it has left every edge router's FIB (r1's; both
leaves') for every VIP the system announces, and as back when it is in all of them for every
one (`Checker.left_at` / `back_at`). The scenarios tell the checker which nodes may
leave (`faulting`) and which must stay (`healthy`), so a withdrawal of a healthy node anywhere
in the phase is reported (`violations`: the checker's I2, and I3 for foreign routes).

It must not inject faults (`faults`) nor decide what a scenario measures (`scenarios`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from announcer.lab import realiser
from announcer.lab.bench.systems import System, announced_vips, node_config
from announcer.lab.bounds import Bounds
from announcer.lab.fib import IPNetwork
from announcer.lab.invariants import Checker
from announcer.lab.topology import Topology
from announcer.lab.watch import FibChange, interface_addresses
from announcer.lab.watchset import watch_routers

Say = Callable[[str], None]


class Phase:
    """The routers' FIBs under watch while `system` runs; use as a context manager."""

    def __init__(self, topology: Topology, system: System) -> None:
        self.topology, self.system = topology, system
        self.nodes = tuple(realiser.nodes_with_role(topology, realiser.CONTROL_PLANE))
        self.vips: tuple[IPNetwork, ...] = announced_vips(system, topology)
        self.gateways = {n: interface_addresses(topology.netns(n)) for n in self.nodes}
        every = frozenset().union(*self.gateways.values())
        self.watcher = watch_routers(topology, self.vips, foreign_gateways=every)
        bounds = Bounds.from_config(node_config(topology, self.nodes[0]))
        self.checker = Checker(self.watcher, self.gateways, bounds)

    def __enter__(self) -> Phase:
        self.watcher.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.watcher.stop()

    # ---- what may move ----------------------------------------------------------------------

    def faulting(self, node: str) -> None:
        self.checker.free(node, at=time.monotonic(), why=f"{self.system.name} fault")

    def healthy(self, node: str) -> None:
        self.checker.stay(node, at=time.monotonic(), why=f"{self.system.name} healthy")

    def violations(self) -> list[str]:
        return [str(v) for v in self.checker.check()]

    # ---- timings ------------------------------------------------------------------------------

    def out_after(self, node: str, since: float, cap: float) -> float | None:
        """Seconds from `since` until `node` was out of r1's FIB; None if not within `cap`."""
        check = self.checker
        self.watcher.wait(lambda: check.left_at(node, since) is not None, _left(since, cap))
        left = check.left_at(node, since)
        return None if left is None or left - since > cap else left - since

    def in_after(self, node: str, since: float, cap: float) -> float | None:
        """Seconds from `since` until `node` was back in r1's FIB; None if not within `cap`."""
        check = self.checker
        self.watcher.wait(lambda: check.back_at(node, since) is not None, _left(since, cap))
        back = check.back_at(node, since)
        return None if back is None or back - since > cap else back - since

    def all_in(self, timeout: float) -> bool:
        """Wait until every node is in r1's FIB for every VIP; whether they are."""
        check = self.checker
        return self.watcher.wait(lambda: all(check.is_in(n) for n in self.nodes), timeout)

    def pause(self, seconds: float) -> None:
        """Let `seconds` pass (pacing a scenario; the watcher keeps recording meanwhile)."""
        self.watcher.wait(lambda: False, seconds)

    def changes(self, vip: IPNetwork, since: float, until: float) -> list[FibChange]:
        return [c for c in self.watcher.history(vip) if since <= c.at <= until]

    def node_of(self, gateway: object) -> str | None:
        return next((n for n, gws in self.gateways.items() if gateway in gws), None)


def _left(since: float, cap: float) -> float:
    return max(0.0, since + cap - time.monotonic())

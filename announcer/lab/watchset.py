"""Every router's FIB under watch at once: what "out of every router's FIB" is read from.

`watch_routers(topology, prefixes, foreign_gateways=...)` gives what the checker, the trial
and the benchmark read: with one router (the simple lab's r1) that router's `FibWatcher`,
unchanged; with several (the dual-homed lab) a `RouterWatch` over one `FibWatcher` per router,
all sharing one condition, with the same reading interface:
- `histories()`: one history per edge router and VIP. A node is *in* when it is a next hop in
  every one of them (every leaf, every VIP) and *out* when it is in none (out of every leaf:
  the spine then has no path to it either);
- `history(prefix)`: the union of the edge routers' next hops (a VIP with none is
  blackholed), `current(prefix)`, `foreign()` (the edge routers' routes that came from a
  node and are not VIPs), `wait(predicate, timeout)` woken by a change on any router;
- `watcher(router)`: one router's own watcher, for a fault that concerns one leaf (an uplink
  cut) or the spine (whose next hops are the leaves, not the nodes).

It only observes, like `watch`; it must not know about faults or nodes' health.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from announcer.lab import routers
from announcer.lab.fib import IPAddress, IPNetwork
from announcer.lab.topology import Topology
from announcer.lab.watch import FibChange, FibWatcher, ForeignRoute


class Watch(Protocol):
    """What is read from a router's FIB history, one router's or several."""

    netns: str
    prefixes: tuple[IPNetwork, ...]

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def raise_error(self) -> None: ...
    def history(self, prefix: IPNetwork) -> tuple[FibChange, ...]: ...
    def histories(self) -> list[tuple[FibChange, ...]]: ...
    def current(self, prefix: IPNetwork) -> frozenset[IPAddress]: ...
    def foreign(self) -> tuple[ForeignRoute, ...]: ...
    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool: ...


class RouterWatch:
    """Several routers' watchers read as one; `edge` names those facing the nodes."""

    def __init__(self, watchers: dict[str, FibWatcher], edge: Sequence[str]) -> None:
        self.watchers, self.edge = watchers, tuple(edge)
        self.netns = "+".join(watchers)
        self.prefixes = watchers[self.edge[0]].prefixes

    def __enter__(self) -> RouterWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started: list[FibWatcher] = []
        try:
            for watcher in self.watchers.values():
                watcher.start()
                started.append(watcher)
        except BaseException:
            for watcher in started:
                watcher.stop()
            raise

    def stop(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()

    def raise_error(self) -> None:
        for watcher in self.watchers.values():
            watcher.raise_error()

    def watcher(self, router: str) -> FibWatcher:
        return self.watchers[router]

    def histories(self) -> list[tuple[FibChange, ...]]:
        return [h for router in self.edge for h in self.watchers[router].histories()]

    def history(self, prefix: IPNetwork) -> tuple[FibChange, ...]:
        return union([self.watchers[router].history(prefix) for router in self.edge], prefix)

    def current(self, prefix: IPNetwork) -> frozenset[IPAddress]:
        found: frozenset[IPAddress] = frozenset()
        return found.union(*(self.watchers[r].current(prefix) for r in self.edge))

    def foreign(self) -> tuple[ForeignRoute, ...]:
        return tuple(route for r in self.edge for route in self.watchers[r].foreign())

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        # Every watcher shares one condition: waiting on the first wakes on any router.
        held = next(iter(self.watchers.values())).wait(predicate, timeout)
        self.raise_error()
        return held


def union(histories: Iterable[Sequence[FibChange]], prefix: IPNetwork) -> tuple[FibChange, ...]:
    """The history of the union of several routers' next hops for `prefix`."""
    lists = list(histories)
    events = sorted((c.at, i, c.nexthops) for i, h in enumerate(lists) for c in h)
    now: list[frozenset[IPAddress]] = [frozenset()] * len(lists)
    merged: list[FibChange] = []
    for at, index, nexthops in events:
        now[index] = nexthops
        hops = frozenset().union(*now)
        if merged and merged[-1].at == at:
            merged.pop()
        if not merged or merged[-1].nexthops != hops:
            merged.append(FibChange(at, prefix, hops))
    return tuple(merged)


def watch_routers(
    topology: Topology, prefixes: Iterable[IPNetwork], *, foreign_gateways: Iterable[IPAddress]
) -> Watch:
    """The watch over every router of `topology` (see the module's docstring)."""
    vips, gateways = tuple(prefixes), frozenset(foreign_gateways)
    names = routers.nodes_with_role(topology, routers.ROUTER)
    if len(names) == 1:
        return FibWatcher(topology.netns(names[0]), vips, foreign_gateways=gateways)
    edge = routers.edge_routers(topology)
    condition = threading.Condition()
    watchers = {
        name: FibWatcher(
            topology.netns(name),
            vips,
            foreign_gateways=gateways if name in edge else (),
            bgp_is_foreign=False,
            condition=condition,
        )
        for name in names
    }
    return RouterWatch(watchers, edge)

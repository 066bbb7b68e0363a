"""The node's decision state, and the questions the core asks of it.

`CoreState` holds everything the daemon decides with: the health machine, the lifecycle and
drain flag, each neighbor's BFD session (recorded, never acted on: the routers act on it),
what ExaBGP holds as far as we know (`installed`: acknowledged; `uncertain`: may
or may not hold; `inflight`: the one command awaiting its answer), the link to ExaBGP, the
VIPs on the interface, and the clients waiting for an answer. Only `announcer.core.step`
changes it, always on a copy: a state once returned is never modified.

The VIP rule lives on the questions asked here (`exposed`) and is enforced in
`announcer.core.vips`: a route is exposed (a router may still route its VIP here) while it
is installed, uncertain or in flight; a link that is not known dead keeps every route it may
hold exposed.

Must not: do I/O, read a clock, log, or import asyncio.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field

from announcer.config.model import Config, VipNetwork
from announcer.core.effects import Action
from announcer.health import Health, HealthMachine, HealthSettings, ProbeResult, Transition
from announcer.lifecycle import Lifecycle
from announcer.routes import Route, RouteKey, desired_routes, phase_of

__all__ = [
    "HISTORY",
    "BfdRecord",
    "CoreState",
    "Inflight",
    "Link",
    "Waiter",
    "health_settings",
    "initial",
]

HISTORY = 20


class Link(enum.Enum):
    """What we know of ExaBGP."""

    CONNECTED = "connected"  # a relay is connected: commands go out
    DISCONNECTED = "disconnected"  # no relay: ExaBGP may be alive and announcing
    KILLING = "killing"  # killed, stopped or restarting: not yet known gone
    DEAD = "dead"  # known dead: announces nothing


@dataclass(frozen=True, slots=True)
class Inflight:
    action: Action
    route: Route
    generation: int
    # Its neighbor's session came up again meanwhile: ExaBGP may have applied it to the
    # session before, so its answer proves nothing about the new one.
    superseded: bool = False


@dataclass(frozen=True, slots=True)
class BfdRecord:
    """One neighbor's BFD session as its last change left it; `last_down`: the diag of the
    last change to Down (None: never went Down)."""

    state: str
    diag: str
    since: float
    changes: int
    last_down: str | None


@dataclass(frozen=True, slots=True)
class Waiter:
    """A `drain --wait` client, answered by `deadline` at the latest."""

    client: int
    deadline: float


def health_settings(config: Config) -> HealthSettings:
    a = config.apiserver
    return HealthSettings(rise=a.rise, fall=a.fall, min_healthy=a.min_healthy)


@dataclass(slots=True, kw_only=True)
class CoreState:
    config: Config
    settings: HealthSettings
    health: HealthMachine
    lifecycle: Lifecycle
    drained: bool
    pending_settings: HealthSettings | None = None
    deadline: float | None = None  # end of the graceful phase
    hurry: bool = False
    link: Link = Link.DEAD
    killed_for: str | None = None  # why ExaBGP was last killed, until a relay connects again
    generation: int = 0
    installed: dict[RouteKey, Route] = field(default_factory=dict)
    uncertain: dict[RouteKey, Route] = field(default_factory=dict)
    parked: dict[RouteKey, Route] = field(default_factory=dict)
    parked_until: float = 0.0
    inflight: Inflight | None = None
    placed: set[VipNetwork] = field(default_factory=set)
    adding: set[VipNetwork] = field(default_factory=set)
    removing: set[VipNetwork] = field(default_factory=set)
    vip_errors: dict[VipNetwork, str] = field(default_factory=dict)
    clear_since: dict[VipNetwork, float] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    stop_clients: list[int] = field(default_factory=list)
    probe_started: float | None = None
    next_probe: float = 0.0  # when the next probe is due (`announcer.core.probing`)
    probe_again: bool = False  # a crash trigger came during a probe: probe once it ends
    after_crash: bool = False  # the next probe to conclude follows a crash trigger
    awaiting_served: ProbeResult | None = None  # a success held until `ServedAnswered`
    last_probe: ProbeResult | None = None
    transitions: tuple[Transition, ...] = ()
    announcing: frozenset[VipNetwork] = frozenset()  # VIPs whose routes are desired
    exited: bool = False
    bfd: dict[str, BfdRecord] = field(default_factory=dict)  # by neighbor address

    def copy(self) -> CoreState:
        """A copy whose containers and health machine can change without touching this."""
        new = copy.copy(self)
        new.health = copy.copy(self.health)
        for name in ("installed", "uncertain", "parked", "vip_errors", "clear_since", "bfd"):
            setattr(new, name, dict(getattr(self, name)))
        for name in ("placed", "adding", "removing"):
            setattr(new, name, set(getattr(self, name)))
        new.waiters = list(self.waiters)
        new.stop_clients = list(self.stop_clients)
        return new

    # -- questions

    @property
    def manage_vips(self) -> bool:
        return self.config.loopback.manage

    def verdict(self) -> frozenset[Route]:
        """The routes health and lifecycle ask for, before the interface has its say."""
        phase = phase_of(self.lifecycle)
        return desired_routes(self.config, announceable=self.health.announceable, phase=phase)

    def reason(self) -> str:
        """Why the node (not) announces, for humans."""
        lifecycle = self.lifecycle
        if lifecycle in (Lifecycle.STOPPED, Lifecycle.DRAINED):
            return str(lifecycle.value)
        if not self.health.announceable:
            probe = self.last_probe
            detail = f": {probe.reason}" if probe is not None else ""
            return f"health {self.health.state.value}{detail}"
        if lifecycle is not Lifecycle.RUNNING:
            return f"{lifecycle.value}: graceful shutdown"
        return "ready" if self.health.state is Health.UP else "health falling"

    def wanted_vips(self) -> set[VipNetwork]:
        return {route.prefix for route in self.verdict()}

    def usable(self, vip: VipNetwork) -> bool:
        """Whether routes for `vip` may be announced: it is on the interface (if managed)."""
        if not self.manage_vips:
            return True
        return vip in self.placed and vip not in self.removing

    def desired(self) -> dict[RouteKey, Route]:
        """What ExaBGP should hold: the verdict, for VIPs already on the interface."""
        return {r.key: r for r in self.verdict() if self.usable(r.prefix)}

    def exposed(self) -> dict[RouteKey, Route]:
        """Routes ExaBGP may hold: installed, uncertain or in flight."""
        routes = {**self.uncertain, **self.installed}
        if self.inflight is not None:
            routes.setdefault(self.inflight.route.key, self.inflight.route)
        return routes

    def exposed_vips(self) -> set[VipNetwork]:
        return {route.prefix for route in self.exposed().values()}


def initial(config: Config, *, drained: bool, now: float) -> CoreState:
    """Health DOWN, DRAINED if the persisted flag says so, ExaBGP not started yet."""
    settings = health_settings(config)
    return CoreState(
        config=config,
        settings=settings,
        health=HealthMachine(settings, now=now),
        lifecycle=Lifecycle.DRAINED if drained else Lifecycle.RUNNING,
        drained=drained,
        next_probe=now,
    )

"""What this node should announce and why: health, drain and lifecycle in one place.

`NodeState` holds the health state machine, the lifecycle (running, draining, drained,
stopping, stopped) with its deadlines, the drain flag as last persisted, the last probe and
the recent health transitions, and answers `verdict()`: the routes to announce and a reason a
human can read. The two-phase moves (drain, stop) live here: first the graceful phase for
`drain.delay` seconds, then withdrawn; the graceful phase ends early once nothing is
announced any more, since it only exists to move traffic away from routes still there.

It is pure like the health machine: no I/O, no clock of its own (callers pass `now`, a
monotonic time; `wall` only stamps what humans read). It must not persist the drain flag
(the daemon does that first, then tells this), talk to ExaBGP or touch the interface.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from announcer.config import Config
from announcer.health import Health, HealthMachine, HealthSettings, ProbeResult, Transition
from announcer.lifecycle import Lifecycle
from announcer.routes import Route, desired_routes, phase_of

__all__ = ["HISTORY", "NodeState", "ProbeRecord", "TransitionEntry", "Verdict", "health_settings"]

log = logging.getLogger(__name__)

HISTORY = 20
_GRACEFUL = {Lifecycle.DRAINING: Lifecycle.DRAINED, Lifecycle.STOPPING: Lifecycle.STOPPED}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The routes to announce now, and why (not)."""

    routes: frozenset[Route]
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    result: ProbeResult
    wall: float  # when it started, Unix time


@dataclass(frozen=True, slots=True)
class TransitionEntry:
    transition: Transition
    wall: float


def health_settings(config: Config) -> HealthSettings:
    a = config.apiserver
    return HealthSettings(rise=a.rise, fall=a.fall, min_healthy=a.min_healthy)


class NodeState:
    """Starts with health DOWN, and DRAINED if the persisted flag says so."""

    def __init__(
        self,
        config: Config,
        *,
        drained: bool,
        now: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._wall = wall
        self._settings = health_settings(config)
        self._health = HealthMachine(self._settings, now=now)
        self._pending_settings: HealthSettings | None = None
        self._health_since = wall()
        self._drained = drained
        self._lifecycle = Lifecycle.DRAINED if drained else Lifecycle.RUNNING
        self._deadline: float | None = None
        self._last_probe: ProbeRecord | None = None
        self._transitions: deque[TransitionEntry] = deque(maxlen=HISTORY)

    # -- what the status shows

    @property
    def config(self) -> Config:
        return self._config

    @property
    def health(self) -> Health:
        return self._health.state

    @property
    def health_since(self) -> float:
        """Unix time of the last health transition (or of the start)."""
        return self._health_since

    @property
    def drained(self) -> bool:
        return self._drained

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    @property
    def deadline(self) -> float | None:
        """When the current graceful phase ends (monotonic), if one is running."""
        return self._deadline

    @property
    def last_probe(self) -> ProbeRecord | None:
        return self._last_probe

    @property
    def transitions(self) -> tuple[TransitionEntry, ...]:
        return tuple(self._transitions)

    # -- inputs

    def observe(self, result: ProbeResult, now: float) -> Transition | None:
        """Feed one probe result to the health machine; the transition it caused, if any."""
        self._last_probe = ProbeRecord(result, self._wall() - (now - result.at))
        transition = self._health.observe(result, now)
        if transition is not None:
            self._health_since = self._wall()
            self._transitions.append(TransitionEntry(transition, self._health_since))
            log.info(
                "health %s -> %s (%s)",
                transition.old.value,
                transition.new.value,
                transition.reason,
                extra={
                    "event": "transition",
                    "old": transition.old.value,
                    "new": transition.new.value,
                    "reason": transition.reason,
                },
            )
        else:
            log.debug("probe: %s (%.1f ms)", result.reason, result.latency * 1000)
        if self._pending_settings is not None and self._health.state is Health.DOWN:
            self._settings, self._pending_settings = self._pending_settings, None
            self._health = HealthMachine(self._settings, now=now)
            log.info("new rise/fall/min_healthy in effect", extra={"event": "reload"})
        return transition

    def reconfigure(self, config: Config) -> None:
        """Use `config` from now on. New rise/fall/min_healthy take effect once health is
        DOWN (at once if it is): a fresh machine starts DOWN, which would withdraw a healthy
        node just for a reload."""
        settings = health_settings(config)
        self._config = config
        if settings == self._settings:
            self._pending_settings = None
        elif self._health.state is Health.DOWN:
            self._settings = settings
            self._health = HealthMachine(settings, now=self._health.since)
        else:
            self._pending_settings = settings
            log.info(
                "new rise/fall/min_healthy take effect when health is next down",
                extra={"event": "reload"},
            )

    def drain(self, now: float, *, announcing: bool) -> None:
        """The drain flag was persisted: start the graceful phase (or be drained at once)."""
        self._drained = True
        if self._lifecycle is Lifecycle.RUNNING:
            self._enter(Lifecycle.DRAINING, "drain requested", now=now, announcing=announcing)

    def undrain(self) -> None:
        """The drain flag was cleared: announce again (as health allows)."""
        self._drained = False
        if self._lifecycle in (Lifecycle.DRAINING, Lifecycle.DRAINED):
            self._move(Lifecycle.RUNNING, "undrain requested")

    def stop(self, now: float, *, announcing: bool) -> None:
        """Stop requested: graceful phase, then withdrawn for good."""
        if self._lifecycle not in (Lifecycle.STOPPING, Lifecycle.STOPPED):
            self._enter(Lifecycle.STOPPING, "stop requested", now=now, announcing=announcing)

    def hurry(self) -> None:
        """Stop now: skip what is left of the graceful phase."""
        if self._lifecycle is not Lifecycle.STOPPED:
            self._move(Lifecycle.STOPPED, "stop requested again: withdrawing at once")

    def advance(self, now: float, *, announcing: bool) -> None:
        """End a graceful phase whose delay is over, or which has nothing left to move."""
        if self._lifecycle in _GRACEFUL and self._deadline is not None:
            if now >= self._deadline:
                self._move(_GRACEFUL[self._lifecycle], "graceful phase over")
            elif not announcing:
                self._move(_GRACEFUL[self._lifecycle], "nothing announced any more")

    # -- the decision

    def verdict(self) -> Verdict:
        phase = phase_of(self._lifecycle)
        announceable = self._health.announceable
        routes = desired_routes(self._config, announceable=announceable, phase=phase)
        return Verdict(routes, self._reason(announceable))

    def _reason(self, announceable: bool) -> str:
        lifecycle = self._lifecycle
        if lifecycle in (Lifecycle.STOPPED, Lifecycle.DRAINED):
            return str(lifecycle.value)
        if not announceable:
            probe = self._last_probe
            detail = f": {probe.result.reason}" if probe is not None else ""
            return f"health {self._health.state.value}{detail}"
        if lifecycle is not Lifecycle.RUNNING:
            return f"{lifecycle.value}: graceful shutdown"
        return "ready" if self._health.state is Health.UP else "health falling"

    def _enter(self, lifecycle: Lifecycle, reason: str, *, now: float, announcing: bool) -> None:
        if announcing:
            self._move(lifecycle, reason)
            self._deadline = now + self._config.drain.delay
        else:
            self._move(_GRACEFUL[lifecycle], f"{reason}; nothing announced")

    def _move(self, lifecycle: Lifecycle, reason: str) -> None:
        old, self._lifecycle, self._deadline = self._lifecycle, lifecycle, None
        log.info(
            "lifecycle %s -> %s (%s)",
            old.value,
            lifecycle.value,
            reason,
            extra={
                "event": "lifecycle",
                "old": old.value,
                "new": lifecycle.value,
                "reason": reason,
            },
        )

"""The health state machine: turns a stream of probe results into UP/DOWN/RISING/FALLING.

It owns the rise/fall counting, the minimum healthy time before the first announcement and
the planned-shutdown fast path. It is pure: no I/O, no clock of its own (the caller passes
`now`, a monotonic time), no asyncio. It must not know about drain or the daemon's lifecycle
(a separate enum elsewhere), nor about routes.

`ProbeResult`, the machine's input, lives here rather than in `announcer.probe` so that this
module needs nothing beyond the standard library; `announcer.probe` re-exports it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Health(enum.Enum):
    """What the probes say about the local apiserver."""

    UP = "up"
    DOWN = "down"
    RISING = "rising"
    FALLING = "falling"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe of the local apiserver.

    `reason` is for humans: "ok", "http 500: etcd", "refused", "timeout", "tls: ...".
    `planned_shutdown` is True when /readyz failed while /livez answered 200, the signature of
    an apiserver that received SIGTERM. `at` is the monotonic time the probe started and
    `latency` how long it took, in seconds.
    """

    ok: bool
    status: int | None
    reason: str
    latency: float
    at: float
    planned_shutdown: bool = False


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """`rise` consecutive successes and `min_healthy` seconds of them before UP; `fall`
    consecutive failures before DOWN. A `min_healthy` of 0 lets `rise` alone decide."""

    rise: int
    fall: int
    min_healthy: float

    def __post_init__(self) -> None:
        if self.rise < 1:
            raise ValueError(f"rise must be at least 1, got {self.rise}")
        if self.fall < 1:
            raise ValueError(f"fall must be at least 1, got {self.fall}")
        if self.min_healthy < 0:
            raise ValueError(f"min_healthy must not be negative, got {self.min_healthy}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, caused at `at` by a probe whose reason was `reason`."""

    old: Health
    new: Health
    at: float
    reason: str


class HealthMachine:
    """Rise/fall hysteresis over probe results; starts DOWN.

    - DOWN: a success starts a streak (RISING, or straight to UP if that one success already
      meets `rise` and `min_healthy`).
    - RISING: UP once the streak holds `rise` successes and has lasted `min_healthy` seconds,
      measured from the start of its first probe; any failure goes back to DOWN.
    - UP: a failure goes to FALLING (still announced), or to DOWN when `fall` is 1.
    - FALLING: `fall` consecutive failures go to DOWN; a success goes back to UP.
    - A failure flagged `planned_shutdown` goes to DOWN from any state: the apiserver is about
      to close its listener and waiting for `fall` would only lose traffic.
    - A success observed with `unserved=True` goes to UP from DOWN or RISING: nobody else
      serves the VIP (`announcer.served` says so), and any healthy answer beats none.
    """

    def __init__(self, settings: HealthSettings, *, now: float = 0.0) -> None:
        self._settings = settings
        self._state = Health.DOWN
        self._since = now
        self._successes = 0
        self._streak_start = 0.0
        self._failures = 0

    @property
    def state(self) -> Health:
        return self._state

    @property
    def since(self) -> float:
        """Monotonic time of the last transition (or of creation)."""
        return self._since

    @property
    def successes(self) -> int:
        """Consecutive successes of the current streak (counted while DOWN/RISING only)."""
        return self._successes

    @property
    def failures(self) -> int:
        """Consecutive failures while announceable (FALLING), short of `fall`."""
        return self._failures

    @property
    def streak_start(self) -> float:
        """When the first probe of the current streak of successes started."""
        return self._streak_start

    @property
    def announceable(self) -> bool:
        """Whether health allows announcing; FALLING still does, hysteresis is its point."""
        return self._state in (Health.UP, Health.FALLING)

    def observe(
        self, result: ProbeResult, now: float, *, unserved: bool = False
    ) -> Transition | None:
        """Feed one probe result; return the transition it caused, if any. `unserved`: no
        other node serves the VIP, so a success is enough to go UP."""
        if result.ok and unserved:
            self._successes, self._failures = 0, 0
            new = Health.UP
        else:
            new = self._on_success(result, now) if result.ok else self._on_failure(result)
        if new is self._state:
            return None
        transition = Transition(old=self._state, new=new, at=now, reason=result.reason)
        self._state = new
        self._since = now
        return transition

    def _on_success(self, result: ProbeResult, now: float) -> Health:
        self._failures = 0
        if self._state in (Health.UP, Health.FALLING):
            return Health.UP
        if self._state is Health.DOWN:
            self._successes = 0
            self._streak_start = result.at
        self._successes += 1
        risen = self._successes >= self._settings.rise
        if risen and now - self._streak_start >= self._settings.min_healthy:
            return Health.UP
        return Health.RISING

    def _on_failure(self, result: ProbeResult) -> Health:
        self._successes = 0
        if result.planned_shutdown or self._state in (Health.DOWN, Health.RISING):
            self._failures = 0
            return Health.DOWN
        self._failures += 1
        if self._failures >= self._settings.fall:
            self._failures = 0
            return Health.DOWN
        return Health.FALLING

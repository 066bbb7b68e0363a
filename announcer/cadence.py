"""When the next probe is due: the probe schedule as a pure function of the health machine's
counters (fast confirmation, after HAProxy's `fastinter`).

- UP and DOWN: `interval` after the last probe was due.
- FALLING (a probe failed while announcing, `fall` not reached yet): `fast_interval`, so that
  the failure is confirmed, or refuted by a success, quickly instead of a whole interval
  later. `fall` still counts probes: one lost probe is retried at once and does not withdraw.
- RISING, fewer than `rise` successes so far: `interval`. Probing faster here would let `rise`
  count fast probes and shrink the healthy time that `rise` x `interval` stands for when
  `min_healthy` is small: a flapping apiserver would come back sooner.
- RISING with `rise` reached, only `min_healthy` missing: the next probe starts when the
  streak will have lasted `min_healthy` (no sooner than `fast_interval`, no later than
  `interval`), so UP comes as soon as `min_healthy` allows, never sooner.
- Never before the previous probe ended: a probe that used its whole deadline is followed at
  once rather than overlapping or skipping.

The daemon's core calls `next_probe_at` after each probe and sleeps until the answer (or an
earlier event: a crash trigger asks for a probe at once). Pure: no clock, no I/O. It must not
decide health (that is `announcer.health`) nor run probes.
"""

from __future__ import annotations

from dataclasses import dataclass

from announcer.health import Health, HealthMachine

__all__ = ["Cadence", "Counters", "next_probe_at"]


@dataclass(frozen=True, slots=True)
class Cadence:
    """The schedule's settings, as `apiserver.*` in the configuration."""

    interval: float
    fast_interval: float
    rise: int
    min_healthy: float

    def __post_init__(self) -> None:
        if not 0 < self.fast_interval < self.interval:
            raise ValueError(
                f"fast_interval must be above 0 and below interval ({self.interval:g}), "
                f"got {self.fast_interval:g}"
            )


@dataclass(frozen=True, slots=True)
class Counters:
    """What the schedule needs to know of the health machine after a probe."""

    health: Health
    successes: int
    streak_start: float

    @classmethod
    def of(cls, machine: HealthMachine) -> Counters:
        return cls(machine.state, machine.successes, machine.streak_start)


def next_probe_at(cadence: Cadence, counters: Counters, *, due: float, ended: float) -> float:
    """When the next probe is due, given when the last one was due (`due`) and when it ended
    (`ended`); monotonic seconds on one clock, the one `HealthMachine` is fed."""
    return max(due + _gap(cadence, counters, due), ended)


def _gap(cadence: Cadence, counters: Counters, due: float) -> float:
    if counters.health is Health.FALLING:
        return cadence.fast_interval
    if counters.health is Health.RISING and counters.successes >= cadence.rise:
        healthy_at = counters.streak_start + cadence.min_healthy
        return min(cadence.interval, max(cadence.fast_interval, healthy_at - due))
    return cadence.interval

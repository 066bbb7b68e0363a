"""The probe schedule by tables, then driven together with the health machine over simulated
apiservers (virtual time: no sleeps)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from announcer.cadence import Cadence, Counters, next_probe_at
from announcer.health import Health, HealthMachine, HealthSettings, ProbeResult

DEFAULTS = Cadence(interval=0.4, fast_interval=0.1, rise=3, min_healthy=2.0)
TIMEOUT = 0.35

# health, successes, streak start, due, ended -> next due
TABLE: list[tuple[Health, int, float, float, float, float]] = [
    (Health.UP, 0, 0.0, 10.0, 10.001, 10.4),
    (Health.DOWN, 0, 0.0, 10.0, 10.001, 10.4),
    # a failure while announcing is confirmed fast
    (Health.FALLING, 0, 0.0, 10.0, 10.001, 10.1),
    # ... but never before the failed probe ended (a timeout)
    (Health.FALLING, 0, 0.0, 10.0, 10.35, 10.35),
    # rising: rise not reached yet, the normal interval keeps rise's meaning
    (Health.RISING, 1, 10.0, 10.0, 10.001, 10.4),
    (Health.RISING, 2, 9.6, 10.0, 10.001, 10.4),
    # rise reached, min_healthy far off: the normal interval
    (Health.RISING, 3, 9.2, 10.0, 10.001, 10.4),
    # rise reached, min_healthy met 0.25 s from now: probe then, not 0.4 s from now
    (Health.RISING, 3, 8.25, 10.0, 10.001, 10.25),
    # ... and no sooner than fast_interval
    (Health.RISING, 5, 8.02, 10.0, 10.001, 10.1),
]


@pytest.mark.parametrize(("health", "successes", "start", "due", "ended", "expected"), TABLE)
def test_next_probe_at(
    health: Health, successes: int, start: float, due: float, ended: float, expected: float
) -> None:
    counters = Counters(health, successes, start)
    assert next_probe_at(DEFAULTS, counters, due=due, ended=ended) == pytest.approx(expected)


@pytest.mark.parametrize("fast", [0.0, -0.1, 0.4, 0.5])
def test_fast_interval_must_be_below_interval(fast: float) -> None:
    with pytest.raises(ValueError, match=f"fast_interval must be .* got {fast:g}"):
        Cadence(interval=0.4, fast_interval=fast, rise=3, min_healthy=2.0)


# --- the schedule and the health machine together, in virtual time --------------------------

# An apiserver as a function of the time a probe starts: (ok, latency); latency None: no
# answer within the deadline.
Apiserver = Callable[[float], tuple[bool, float | None]]


def run(
    apiserver: Apiserver, *, until: float, cadence: Cadence = DEFAULTS
) -> list[tuple[float, Health]]:
    """Probe from t=0 (UP already) until `until`; the (time, state) of every transition."""
    settings = HealthSettings(rise=cadence.rise, fall=2, min_healthy=cadence.min_healthy)
    machine = HealthMachine(settings)
    healthy = ProbeResult(ok=True, status=200, reason="ok", latency=0.0, at=-10.0)
    for now in (-10.0, -5.0, 0.0):  # long healthy already: UP
        machine.observe(healthy, now)
    assert machine.state is Health.UP
    changes: list[tuple[float, Health]] = []
    due = 0.0
    while due < until:
        ok, latency = apiserver(due)
        ended = due + (TIMEOUT if latency is None else latency)
        result = ProbeResult(
            ok=ok and latency is not None,
            status=200 if ok else None,
            reason="ok" if ok else "fail",
            latency=ended - due,
            at=due,
        )
        if (transition := machine.observe(result, ended)) is not None:
            changes.append((ended, transition.new))
        due = next_probe_at(cadence, Counters.of(machine), due=due, ended=ended)
    return changes


def _withdrawn_at(changes: list[tuple[float, Health]]) -> float:
    return next(at for at, state in changes if state is Health.DOWN)


@pytest.mark.parametrize("fails_at", [5.0, 5.05, 5.2, 5.39])
def test_a_failing_apiserver_is_down_within_an_interval_and_a_fast_interval(
    fails_at: float,
) -> None:
    changes = run(lambda t: (t < fails_at, 0.002), until=10.0)
    # the next probe on the grid, then one fast_interval later the confirmation
    assert _withdrawn_at(changes) - fails_at <= 0.4 + 0.1 + 0.002 + 1e-9


def test_a_dead_apiserver_that_times_out_is_down_after_two_deadlines() -> None:
    changes = run(lambda t: (t < 5.0, 0.002) if t < 5.0 else (False, None), until=10.0)
    assert _withdrawn_at(changes) - 5.0 <= 0.4 + 2 * TIMEOUT + 1e-9


def test_a_slow_apiserver_stays_up() -> None:
    assert run(lambda _t: (True, 0.15), until=30.0) == []


@pytest.mark.parametrize("lost_at", [5.0, 5.2])
def test_one_lost_probe_does_not_withdraw(lost_at: float) -> None:
    lost = {round(lost_at / 0.4) * 0.4}

    def apiserver(t: float) -> tuple[bool, float | None]:
        return (True, None if any(abs(t - x) < 1e-9 for x in lost) else 0.002)

    assert [state for _, state in run(apiserver, until=10.0)] == [Health.FALLING, Health.UP]


def test_flapping_every_other_probe_falls_back_and_forth_but_never_withdraws() -> None:
    # A failure, then fast a success: FALLING/UP, never DOWN (fall is 2).
    count = iter(range(10_000))
    changes = run(lambda _t: (next(count) % 2 == 0, 0.002), until=10.0)
    states = {state for _, state in changes}
    assert Health.FALLING in states
    assert Health.DOWN not in states


def test_coming_back_waits_min_healthy_and_not_an_interval_more() -> None:
    def apiserver(t: float) -> tuple[bool, float | None]:
        return (not 5.0 <= t < 6.0, 0.002)

    changes = run(apiserver, until=15.0)
    back = next(at for at, state in changes if state is Health.RISING)
    up = next(at for at, state in changes if state is Health.UP and at > back)
    assert 2.0 <= up - back + 0.002 <= 2.0 + 0.1 + 0.002 + 1e-9


def test_with_min_healthy_zero_rise_still_takes_rise_intervals() -> None:
    cadence = Cadence(interval=0.4, fast_interval=0.1, rise=3, min_healthy=0.0)

    def apiserver(t: float) -> tuple[bool, float | None]:
        return (not 5.0 <= t < 6.0, 0.002)

    changes = run(apiserver, until=15.0, cadence=cadence)
    back = next(at for at, state in changes if state is Health.RISING)
    up = next(at for at, state in changes if state is Health.UP and at > back)
    assert up - back == pytest.approx(2 * 0.4)

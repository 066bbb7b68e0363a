"""The health state machine, by tables of probe outcomes and the states they must lead to."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from announcer.health import Health, HealthMachine, HealthSettings, ProbeResult, Transition

UP, DOWN, RISING, FALLING = Health.UP, Health.DOWN, Health.RISING, Health.FALLING

# One probe outcome: "+" success, "-" failure, "S" failure flagged as planned shutdown.
Step = tuple[str, float]


def result(kind: str, t: float, reason: str | None = None) -> ProbeResult:
    ok = kind == "+"
    default = "ok" if ok else ("http 500: shutdown" if kind == "S" else "refused")
    return ProbeResult(
        ok=ok,
        status=200 if ok else None,
        reason=default if reason is None else reason,
        latency=0.01,
        at=t,
        planned_shutdown=kind == "S",
    )


def run(settings: HealthSettings, steps: list[Step]) -> list[Health]:
    machine = HealthMachine(settings)
    states = []
    for kind, t in steps:
        machine.observe(result(kind, t), now=t)
        states.append(machine.state)
    return states


def every_second(pattern: str, start: float = 0.0) -> list[Step]:
    return [(kind, start + i) for i, kind in enumerate(pattern)]


@dataclass(frozen=True)
class Case:
    name: str
    settings: HealthSettings
    steps: list[Step]
    expected: list[Health]


CASES = [
    Case(
        "rise counts consecutive successes",
        HealthSettings(rise=3, fall=3, min_healthy=0),
        every_second("+++"),
        [RISING, RISING, UP],
    ),
    Case(
        "rise 1 without min_healthy goes up at the first success",
        HealthSettings(rise=1, fall=1, min_healthy=0),
        every_second("+"),
        [UP],
    ),
    Case(
        "a failure while rising resets the streak",
        HealthSettings(rise=3, fall=3, min_healthy=0),
        every_second("++-+++"),
        [RISING, RISING, DOWN, RISING, RISING, UP],
    ),
    Case(
        "min_healthy holds UP back after rise is met",
        HealthSettings(rise=2, fall=3, min_healthy=5.0),
        every_second("+++++++"),
        [RISING, RISING, RISING, RISING, RISING, UP, UP],
    ),
    Case(
        "min_healthy is measured from the first success of the current streak",
        HealthSettings(rise=2, fall=3, min_healthy=3.0),
        every_second("++-++++"),
        [RISING, RISING, DOWN, RISING, RISING, RISING, UP],
    ),
    Case(
        "min_healthy met by two slow probes is still held back by rise",
        HealthSettings(rise=3, fall=3, min_healthy=5.0),
        [("+", 0.0), ("+", 10.0), ("+", 11.0)],
        [RISING, RISING, UP],
    ),
    Case(
        "failures below fall keep the node announced",
        HealthSettings(rise=1, fall=3, min_healthy=0),
        every_second("+--+---"),
        [UP, FALLING, FALLING, UP, FALLING, FALLING, DOWN],
    ),
    Case(
        "fall 1 goes straight down",
        HealthSettings(rise=1, fall=1, min_healthy=0),
        every_second("+-"),
        [UP, DOWN],
    ),
    Case(
        "failures while down stay down",
        HealthSettings(rise=2, fall=2, min_healthy=0),
        every_second("---S-"),
        [DOWN, DOWN, DOWN, DOWN, DOWN],
    ),
    Case(
        "planned shutdown from UP",
        HealthSettings(rise=1, fall=5, min_healthy=0),
        every_second("+S"),
        [UP, DOWN],
    ),
    Case(
        "planned shutdown from FALLING",
        HealthSettings(rise=1, fall=5, min_healthy=0),
        every_second("+--S"),
        [UP, FALLING, FALLING, DOWN],
    ),
    Case(
        "planned shutdown from RISING",
        HealthSettings(rise=3, fall=5, min_healthy=0),
        every_second("++S"),
        [RISING, RISING, DOWN],
    ),
    Case(
        "after falling, rising starts over",
        HealthSettings(rise=2, fall=2, min_healthy=0),
        every_second("++--++"),
        [RISING, UP, FALLING, DOWN, RISING, UP],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_state_sequences(case: Case) -> None:
    assert run(case.settings, case.steps) == case.expected


def test_starts_down_and_not_announceable() -> None:
    machine = HealthMachine(HealthSettings(rise=1, fall=1, min_healthy=0), now=42.0)
    assert machine.state is DOWN
    assert machine.since == 42.0
    assert not machine.announceable


@pytest.mark.parametrize("rise", [1, 2, 3, 5])
@pytest.mark.parametrize("min_healthy", [0.0, 2.5, 7.0])
def test_never_up_before_both_rise_and_min_healthy(rise: int, min_healthy: float) -> None:
    settings = HealthSettings(rise=rise, fall=2, min_healthy=min_healthy)
    machine = HealthMachine(settings)
    for i in range(20):
        t = i * 0.5
        machine.observe(result("+", t), now=t)
        enough = i + 1 >= rise and t >= min_healthy
        assert (machine.state is UP) == enough, (i, t)


@pytest.mark.parametrize("rise", [2, 3])
def test_flapping_never_reaches_up(rise: int) -> None:
    states = run(HealthSettings(rise=rise, fall=2, min_healthy=0), every_second("+-" * 20))
    assert UP not in states
    assert set(states) == {RISING, DOWN}


@pytest.mark.parametrize("fall", [2, 3])
def test_flapping_once_up_never_goes_down(fall: int) -> None:
    states = run(HealthSettings(rise=1, fall=fall, min_healthy=0), every_second("-+" * 20))
    assert states[:2] == [DOWN, UP]
    assert DOWN not in states[2:]
    assert set(states[2:]) == {UP, FALLING}


@pytest.mark.parametrize(
    ("state", "announceable"), [(UP, True), (FALLING, True), (RISING, False), (DOWN, False)]
)
def test_announceable(state: Health, announceable: bool) -> None:
    to_reach = {UP: "++", FALLING: "++-", RISING: "+", DOWN: ""}[state]
    machine = HealthMachine(HealthSettings(rise=2, fall=3, min_healthy=0))
    for kind, t in every_second(to_reach):
        machine.observe(result(kind, t), now=t)
    assert machine.state is state
    assert machine.announceable is announceable


def test_transitions_carry_reason_time_and_states() -> None:
    machine = HealthMachine(HealthSettings(rise=2, fall=2, min_healthy=0))
    feed = [
        ("+", 1.0, "ok"),
        ("+", 2.0, "ok"),
        ("+", 3.0, "ok"),
        ("-", 4.0, "http 500: etcd"),
        ("-", 5.0, "timeout"),
        ("+", 6.0, "ok"),
        ("S", 7.0, "http 500: shutdown"),
    ]
    got = [machine.observe(result(kind, t, reason), now=t + 0.25) for kind, t, reason in feed]
    assert got == [
        Transition(old=DOWN, new=RISING, at=1.25, reason="ok"),
        Transition(old=RISING, new=UP, at=2.25, reason="ok"),
        None,
        Transition(old=UP, new=FALLING, at=4.25, reason="http 500: etcd"),
        Transition(old=FALLING, new=DOWN, at=5.25, reason="timeout"),
        Transition(old=DOWN, new=RISING, at=6.25, reason="ok"),
        Transition(old=RISING, new=DOWN, at=7.25, reason="http 500: shutdown"),
    ]
    assert machine.since == 7.25


def test_planned_shutdown_from_up_with_large_fall_is_one_transition() -> None:
    machine = HealthMachine(HealthSettings(rise=1, fall=10, min_healthy=0))
    machine.observe(result("+", 0.0), now=0.0)
    transition = machine.observe(result("S", 1.0), now=1.0)
    assert transition == Transition(old=UP, new=DOWN, at=1.0, reason="http 500: shutdown")


def test_min_healthy_counts_from_probe_start_not_observation() -> None:
    # The streak began when the first successful probe started, even if observed later.
    machine = HealthMachine(HealthSettings(rise=2, fall=2, min_healthy=3.0))
    machine.observe(result("+", 0.0), now=0.5)
    machine.observe(result("+", 2.9), now=2.95)
    assert machine.state is RISING
    machine.observe(result("+", 3.0), now=3.0)
    assert machine.state is UP


@pytest.mark.parametrize(
    ("rise", "fall", "min_healthy", "message"),
    [
        (0, 1, 0.0, "rise must be at least 1, got 0"),
        (1, 0, 0.0, "fall must be at least 1, got 0"),
        (1, 1, -1.0, "min_healthy must not be negative, got -1.0"),
    ],
)
def test_settings_reject_nonsense(rise: int, fall: int, min_healthy: float, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        HealthSettings(rise=rise, fall=fall, min_healthy=min_healthy)


# --- nobody else serves the VIP -----------------------------------------------------------------

DEFAULTS = HealthSettings(rise=3, fall=2, min_healthy=2.0)


@pytest.mark.parametrize(
    ("before", "unserved", "expected"),
    [
        ("", True, UP),  # the first apiserver of a cluster: its first 200 is enough
        ("", False, RISING),  # others serve: rise and min_healthy as always
        ("+", True, UP),
        ("++-", True, UP),  # back after a failure, still alone
        ("++-+", False, RISING),  # a flapping node while others serve gains nothing
    ],
)
def test_a_success_while_unserved_is_enough(before: str, unserved: bool, expected: Health) -> None:
    machine = HealthMachine(DEFAULTS)
    for kind, t in every_second(before):
        machine.observe(result(kind, t), now=t)
    t = float(len(before))
    machine.observe(result("+", t), now=t, unserved=unserved)
    assert machine.state is expected


def test_unserved_does_not_turn_a_failure_into_a_success() -> None:
    machine = HealthMachine(DEFAULTS)
    assert machine.observe(result("-", 0.0), now=0.0, unserved=True) is None
    assert machine.state is DOWN


def test_after_an_unserved_up_a_failure_falls_as_usual() -> None:
    machine = HealthMachine(DEFAULTS)
    machine.observe(result("+", 0.0), now=0.0, unserved=True)
    assert [machine.observe(result("-", t), now=t) is not None for t in (1.0, 2.0)] == [True, True]
    assert machine.state is DOWN

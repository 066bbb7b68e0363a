"""Table tests of the core's probing: the schedule (fast confirmation), crash triggers and the
served check, through `step` in the simulated world."""

from __future__ import annotations

import dataclasses

import pytest
from core_world import World, config

from announcer.core import events as ev
from announcer.core.effects import Action, CheckServed, StartProbe
from announcer.health import Health, ProbeResult
from announcer.lifecycle import Lifecycle

INTERVAL = 1.0
FAST = 0.1  # the default fast_interval: min(0.1, interval / 2)


def started(w: World) -> bool:
    return any(isinstance(e, StartProbe) for e in w.effects)


def up_world(**kwargs: object) -> World:
    w = World(**kwargs)  # type: ignore[arg-type]
    w.healthy()
    assert w.state.health.state is Health.UP
    w.tick(w.state.next_probe - w.now)  # onto the schedule: the shell ticks at next_probe
    w.probe(True)
    return w


def test_a_failed_probe_is_confirmed_at_fast_interval_then_withdrawn() -> None:
    w = up_world()
    w.tick(INTERVAL)
    w.probe(False)
    assert w.state.health.state is Health.FALLING
    assert w.state.next_probe == pytest.approx(w.now + FAST)
    w.tick(FAST / 2)
    assert not started(w)
    w.tick(w.state.next_probe - w.now)
    assert started(w)
    w.probe(False)
    assert w.state.health.state is Health.DOWN
    assert w.pending is not None and w.pending.action is Action.WITHDRAW


def test_one_lost_probe_does_not_withdraw_and_the_interval_returns() -> None:
    w = up_world()
    mark = len(w.sent)
    w.tick(INTERVAL)
    w.probe(False)
    w.tick(FAST)
    w.probe(True)
    assert w.state.health.state is Health.UP
    assert w.sent_since(mark) == []
    assert w.state.next_probe == pytest.approx(w.now + INTERVAL)


@pytest.mark.parametrize("good", [False, True])
def test_on_the_way_up_the_interval_stays(good: bool) -> None:
    """DOWN, and RISING short of rise: the interval (fast probes must not count to rise)."""
    w = World()
    w.start_exabgp()
    w.tick(0.0)
    w.probe(good)
    assert w.state.health.state is (Health.RISING if good else Health.DOWN)
    assert w.state.next_probe == pytest.approx(INTERVAL)


def test_the_last_probe_up_lands_when_min_healthy_is_met() -> None:
    cfg = dataclasses.replace(
        config(),
        apiserver=dataclasses.replace(config().apiserver, rise=2, min_healthy=1.5),
    )
    w = World(cfg=cfg)
    w.start_exabgp()
    w.tick(0.0)
    w.probe(True)  # streak starts at 0
    w.tick(INTERVAL)
    w.probe(True)  # rise met at 1.0, min_healthy not
    assert w.state.health.state is Health.RISING
    assert w.state.next_probe == pytest.approx(1.5)
    w.tick(0.5)
    assert started(w)
    w.probe(True)
    assert w.state.health.state is Health.UP


def test_a_crash_trigger_probes_at_once() -> None:
    w = up_world()
    w.tick(0.3)
    assert not started(w)
    w.feed(ev.CrashTriggered("reset"))
    assert started(w) and w.state.probe_started == w.now


def test_a_crash_trigger_during_a_probe_probes_again_when_it_ends() -> None:
    w = up_world()
    w.tick(INTERVAL)
    assert started(w)
    w.feed(ev.CrashTriggered("refused"))
    assert not started(w)  # one probe at a time
    w.probe(True)  # started before the crash
    assert w.state.next_probe == w.now
    w.tick(0.0)
    assert started(w)


def _refused(w: World) -> None:
    assert w.probing
    w.probing = False
    w.feed(ev.ProbeDone(ProbeResult(ok=False, status=None, reason="refused", latency=0.001,
                                    at=w.now)))  # fmt: skip


def test_a_refused_probe_after_a_crash_trigger_is_confirmed_at_once() -> None:
    w = up_world()
    w.tick(0.3)
    w.feed(ev.CrashTriggered("refused"))
    _refused(w)
    assert w.state.health.state is Health.FALLING
    assert w.state.next_probe == w.now  # not fast_interval later
    w.tick(0.0)
    assert started(w)
    _refused(w)
    assert w.state.health.state is Health.DOWN
    assert w.pending is not None and w.pending.action is Action.WITHDRAW


@pytest.mark.parametrize("trigger", [False, True])
def test_other_failures_are_confirmed_at_fast_interval(trigger: bool) -> None:
    """Refused without a crash trigger, or a trigger whose probe got an answer."""
    w = up_world()
    if trigger:
        w.tick(0.3)
        w.feed(ev.CrashTriggered("reset"))
        w.probe(False)  # http 500 after the trigger: a server is there
    else:
        w.tick(INTERVAL)
        _refused(w)
    assert w.state.health.state is Health.FALLING
    assert w.state.next_probe == pytest.approx(w.now + FAST)


def test_a_trigger_probe_that_succeeds_does_not_hurry_a_later_failure() -> None:
    w = up_world()
    w.tick(0.3)
    w.feed(ev.CrashTriggered("reset"))
    w.probe(True)  # an idle close after all
    w.tick(w.state.next_probe - w.now)
    _refused(w)
    assert w.state.health.state is Health.FALLING
    assert w.state.next_probe == pytest.approx(w.now + FAST)


def test_nobody_serves_the_first_healthy_answer_announces() -> None:
    w = World(served=False)
    w.start_exabgp()
    w.tick(0.0)
    w.probe(True)
    assert len(w.served_checks) == 1
    check = w.served_checks[0]
    assert check.port == 6443 and check.timeout == FAST
    assert set(check.addresses) == {vip.network_address for vip in w.cfg.vips}
    assert w.state.health.state is Health.UP
    w.quiet()
    assert len(w.rib) == 2


def test_others_serve_rise_and_min_healthy_apply() -> None:
    w = World(served=True)
    w.start_exabgp()
    w.tick(0.0)
    w.probe(True)
    assert len(w.served_checks) == 1
    assert w.state.health.state is Health.RISING
    assert w.sent == []


def test_no_other_probe_while_the_served_answer_is_awaited() -> None:
    w = World(served=None)
    w.start_exabgp()
    w.tick(0.0)
    w.probe(True)
    assert w.state.health.state is Health.DOWN  # the success is held
    w.tick(5 * INTERVAL)
    assert not started(w)
    w.answer_served(False)
    assert w.state.health.state is Health.UP


def test_no_served_check_while_announcing_or_drained() -> None:
    w = up_world(served=False)
    checks = len(w.served_checks)
    w.tick(INTERVAL)
    w.probe(True)  # UP: nothing to ask
    assert len(w.served_checks) == checks
    d = World(served=False, drained=True)
    d.start_exabgp()
    d.tick(0.0)
    d.probe(True)
    assert d.served_checks == [] and d.state.lifecycle is Lifecycle.DRAINED
    assert d.state.health.state is Health.RISING


def test_a_flapping_node_gains_nothing_while_others_serve() -> None:
    w = World(served=True)
    w.start_exabgp()
    for good in (True, False, True, False, True):
        w.tick(INTERVAL)
        w.probe(good)
        assert w.state.health.state is not Health.UP
    assert w.sent == []


def test_a_vip_still_on_the_interface_skips_the_check() -> None:
    w = up_world(served=False)
    w.unhealthy()
    w.quiet()  # withdrawn; the VIP stays on lo for withdraw_wait
    assert w.lo
    checks = len(w.served_checks)
    w.tick(INTERVAL)
    w.probe(True)
    assert len(w.served_checks) == checks
    assert w.state.health.state is Health.RISING


def test_served_answer_without_a_held_probe_is_ignored() -> None:
    w = World()
    before = w.state
    w.feed(ev.ServedAnswered(False, "timeout"))
    assert w.state.health.state is before.health.state
    assert not any(isinstance(e, CheckServed) for e in w.effects)

"""NodeState: health, drain and lifecycle into a verdict, by tables of inputs."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from announcer.config import Config, parse_config
from announcer.health import Health, ProbeResult
from announcer.lifecycle import Lifecycle
from announcer.routes import GRACEFUL_SHUTDOWN_COMMUNITY, Phase, desired_routes
from announcer.state import HISTORY, NodeState

DOCUMENT: dict[str, object] = {
    "apiserver": {"interval": 1.0, "timeout": 0.5, "rise": 2, "fall": 2, "min_healthy": 0},
    "vips": ["198.51.100.10/32"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
    },
    "drain": {"delay": 3.0},
}
CONFIG = parse_config(DOCUMENT)
WALL = 1_700_000_000.0


def ok(at: float) -> ProbeResult:
    return ProbeResult(ok=True, status=200, reason="ok", latency=0.01, at=at)


def failed(at: float, reason: str = "http 500: etcd", *, planned: bool = False) -> ProbeResult:
    return ProbeResult(
        ok=False, status=500, reason=reason, latency=0.01, at=at, planned_shutdown=planned
    )


class Wall:
    def __init__(self) -> None:
        self.now = WALL

    def __call__(self) -> float:
        return self.now


def state(*, drained: bool = False, config: Config = CONFIG) -> NodeState:
    return NodeState(config, drained=drained, now=0.0, wall=Wall())


def up(node: NodeState, at: float = 0.0) -> NodeState:
    for step in range(CONFIG.apiserver.rise):
        node.observe(ok(at + step), at + step)
    assert node.health is Health.UP
    return node


def lifecycle(node: NodeState) -> Lifecycle:
    return node.lifecycle  # a call: each assert reads it afresh, also for the type checker


def health(node: NodeState) -> Health:
    return node.health


NORMAL = desired_routes(CONFIG, announceable=True, phase=Phase.NORMAL)
GRACEFUL = desired_routes(CONFIG, announceable=True, phase=Phase.GRACEFUL)


def test_starts_down_running_and_announces_nothing() -> None:
    node = state()
    assert (node.health, node.lifecycle, node.drained) == (Health.DOWN, Lifecycle.RUNNING, False)
    verdict = node.verdict()
    assert verdict.routes == frozenset()
    assert verdict.reason == "health down"
    assert node.last_probe is None


def test_starts_drained_when_the_flag_is_set() -> None:
    node = up(state(drained=True))
    assert node.lifecycle is Lifecycle.DRAINED
    assert node.verdict().routes == frozenset()
    assert node.verdict().reason == "drained"


def test_rise_then_announce_then_fall() -> None:
    node = state()
    assert node.observe(ok(0.0), 0.0) is not None
    assert node.verdict().reason == "health rising: ok"
    node.observe(ok(1.0), 1.0)
    assert node.verdict() == replace(node.verdict(), routes=NORMAL, reason="ready")
    node.observe(failed(2.0), 2.0)
    assert node.health is Health.FALLING
    assert node.verdict().routes == NORMAL  # hysteresis: still announced
    assert node.verdict().reason == "health falling"
    node.observe(failed(3.0), 3.0)
    assert node.verdict().routes == frozenset()
    assert node.verdict().reason == "health down: http 500: etcd"


def test_transitions_are_logged_with_stable_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="announcer.state")
    node = state()
    node.observe(ok(0.0), 0.0)
    node.observe(ok(1.0), 1.0)
    fields = [r.__dict__ for r in caplog.records if "event" in r.__dict__]
    events = [(f["event"], f["old"], f["new"], f["reason"]) for f in fields]
    assert events == [("transition", "down", "rising", "ok"), ("transition", "rising", "up", "ok")]


def test_history_keeps_the_last_transitions_with_wall_times() -> None:
    wall = Wall()
    node = NodeState(CONFIG, drained=False, now=0.0, wall=wall)
    for step in range(HISTORY + 5):
        wall.now = WALL + step
        node.observe(ok(step) if step % 2 == 0 else failed(step, planned=True), step)
    assert len(node.transitions) == HISTORY
    assert node.transitions[-1].wall == WALL + HISTORY + 4
    assert node.health_since == WALL + HISTORY + 4
    probe = node.last_probe
    assert probe is not None and probe.wall == WALL + HISTORY + 4


def test_last_probe_wall_time_is_when_it_started() -> None:
    node = state()
    node.observe(ok(10.0), 10.25)
    probe = node.last_probe
    assert probe is not None and probe.wall == WALL - 0.25


def test_drain_while_announcing_is_graceful_for_the_delay_then_withdrawn() -> None:
    node = up(state())
    node.drain(10.0, announcing=True)
    assert (node.lifecycle, node.drained, node.deadline) == (Lifecycle.DRAINING, True, 13.0)
    verdict = node.verdict()
    assert verdict.routes == GRACEFUL
    assert all(GRACEFUL_SHUTDOWN_COMMUNITY in r.communities for r in verdict.routes)
    assert verdict.reason == "draining: graceful shutdown"
    node.advance(12.9, announcing=True)
    assert node.lifecycle is Lifecycle.DRAINING
    node.advance(13.0, announcing=True)
    assert (node.lifecycle, node.deadline) == (Lifecycle.DRAINED, None)
    assert node.verdict().routes == frozenset()


@pytest.mark.parametrize("healthy", [True, False])
def test_drain_with_nothing_announced_is_drained_at_once(healthy: bool) -> None:
    node = up(state()) if healthy else state()
    node.drain(10.0, announcing=False)
    assert node.lifecycle is Lifecycle.DRAINED
    assert node.verdict().routes == frozenset()


def test_graceful_phase_ends_early_once_nothing_is_announced() -> None:
    node = up(state())
    node.drain(10.0, announcing=True)
    node.advance(10.5, announcing=False)  # e.g. ExaBGP went away: nothing left to move
    assert node.lifecycle is Lifecycle.DRAINED


@pytest.mark.parametrize("lifecycle", [Lifecycle.DRAINING, Lifecycle.DRAINED])
def test_undrain_returns_to_running(lifecycle: Lifecycle) -> None:
    node = up(state())
    node.drain(10.0, announcing=True)
    if lifecycle is Lifecycle.DRAINED:
        node.advance(20.0, announcing=True)
    assert node.lifecycle is lifecycle
    node.undrain()
    assert (node.lifecycle, node.drained, node.deadline) == (Lifecycle.RUNNING, False, None)
    assert node.verdict().routes == NORMAL


def test_undrain_announces_only_if_health_allows() -> None:
    node = state(drained=True)
    node.undrain()
    assert node.lifecycle is Lifecycle.RUNNING
    assert node.verdict().routes == frozenset()


def test_stop_is_graceful_then_stopped_and_drain_or_undrain_do_not_revive_it() -> None:
    node = up(state())
    node.stop(5.0, announcing=True)
    assert (node.lifecycle, node.deadline) == (Lifecycle.STOPPING, 8.0)
    assert node.verdict().routes == GRACEFUL
    node.drain(6.0, announcing=True)
    node.undrain()
    assert node.lifecycle is Lifecycle.STOPPING
    assert not node.drained
    node.advance(8.0, announcing=True)
    assert lifecycle(node) is Lifecycle.STOPPED
    assert node.verdict() == replace(node.verdict(), routes=frozenset(), reason="stopped")


def test_stop_with_nothing_announced_and_hurry_skip_the_graceful_phase() -> None:
    quiet = up(state())
    quiet.stop(5.0, announcing=False)
    assert quiet.lifecycle is Lifecycle.STOPPED
    hurried = up(state())
    hurried.stop(5.0, announcing=True)
    hurried.hurry()
    assert hurried.lifecycle is Lifecycle.STOPPED
    assert hurried.verdict().routes == frozenset()


def test_stop_of_a_drained_node_announces_nothing() -> None:
    node = up(state(drained=True))
    node.stop(1.0, announcing=False)
    assert node.lifecycle is Lifecycle.STOPPED
    assert node.verdict().routes == frozenset()


def test_reconfigure_applies_routes_at_once() -> None:
    node = up(state())
    document = {**DOCUMENT, "announce": {"med": 7}}
    node.reconfigure(parse_config(document))
    assert {route.med for route in node.verdict().routes} == {7}


def test_new_rise_applies_at_once_when_down() -> None:
    node = state()
    node.reconfigure(parse_config({**DOCUMENT, "apiserver": {**_apiserver(), "rise": 1}}))
    node.observe(ok(0.0), 0.0)
    assert node.health is Health.UP


def test_new_rise_waits_for_the_next_down_when_up() -> None:
    node = up(state())
    node.reconfigure(parse_config({**DOCUMENT, "apiserver": {**_apiserver(), "rise": 4}}))
    assert node.health is Health.UP  # not reset: a reload must not withdraw a healthy node
    node.observe(failed(10.0, planned=True), 10.0)
    for step in range(3):
        node.observe(ok(11.0 + step), 11.0 + step)
    assert health(node) is Health.RISING  # 3 successes are no longer enough
    node.observe(ok(14.0), 14.0)
    assert health(node) is Health.UP


def _apiserver() -> dict[str, object]:
    section = DOCUMENT["apiserver"]
    assert isinstance(section, dict)
    return section

"""`step` by tables: commands to ExaBGP, lifecycle, probes and beats, the VIPs on the
interface. The windows the core closes are in test_core_windows.py, its invariants under
random interleavings in test_core_property.py."""

from __future__ import annotations

import copy
import dataclasses
import logging
from ipaddress import ip_address

import pytest
from core_world import DOCUMENT, World, config, failed, ok

from announcer.config import Config, parse_config
from announcer.core import Link, initial, step
from announcer.core import events as ev
from announcer.core.effects import Action, AddVip, Beat, Log, RemoveVip, Send, StartProbe
from announcer.core.exabgp import PARK
from announcer.health import Health
from announcer.lifecycle import Lifecycle
from announcer.routes import GRACEFUL_SHUTDOWN_COMMUNITY

CONFIG = config()
V4, V6 = CONFIG.vips


def actions(sends: list[Send]) -> list[tuple[str, str]]:
    return [(s.action.value, str(s.route.prefix)) for s in sends]


# -- starting


@pytest.mark.parametrize(
    ("drained", "lifecycle"), [(False, Lifecycle.RUNNING), (True, Lifecycle.DRAINED)]
)
def test_starts_down_announcing_nothing(drained: bool, lifecycle: Lifecycle) -> None:
    state = initial(CONFIG, drained=drained, now=0.0)
    assert (state.health.state, state.lifecycle, state.link) == (Health.DOWN, lifecycle, Link.DEAD)
    assert not state.desired() and not state.exposed()


def test_a_drained_node_stays_withdrawn_while_healthy() -> None:
    w = World(drained=True)
    w.healthy()
    assert w.state.health.state is Health.UP
    assert not w.sent and not w.lo


# -- commands


def test_vip_on_the_interface_before_its_announce_then_withdraws_first() -> None:
    w = World()
    w.start_exabgp()
    for _ in range(2):
        w.tick(1.0)
        w.probe(True)
    assert [type(e) for e in w.effects if isinstance(e, (AddVip, Send))] == [AddVip, AddVip]
    assert w.pending is None  # nothing announced before the VIP is on the interface
    w.quiet()
    assert actions(w.sent) == [("announce", str(V4)), ("announce", str(V6))]
    w.unhealthy()
    w.quiet()
    assert actions(w.sent[2:]) == [("withdraw", str(V4)), ("withdraw", str(V6))]


def test_only_the_difference_is_sent_and_changed_attributes_in_place() -> None:
    w = World()
    w.healthy()
    mark = len(w.sent)
    w.tick(1.0)
    w.probe(True)
    assert w.sent_since(mark) == []
    w.feed(
        ev.ReloadRequested(
            dataclasses.replace(CONFIG, announce=dataclasses.replace(CONFIG.announce, med=50))
        )
    )
    w.quiet()
    assert actions(w.sent_since(mark)) == [("announce", str(V4)), ("announce", str(V6))]
    assert {r.med for r in w.rib.values()} == {50}


def test_a_change_during_a_command_is_seen_by_the_next_one() -> None:
    w = World()
    w.healthy()
    w.feed(ev.DrainRequested())  # graceful: announce again with the community
    assert w.pending is not None and w.pending.action is Action.ANNOUNCE
    w.feed(ev.StopRequested())
    w.feed(ev.StopRequested())  # hurry: withdrawn at once; exabgp killed
    assert w.state.link is Link.KILLING and w.kills == 1


def test_an_error_to_an_announce_resyncs_and_parks_it() -> None:
    w = World()
    w.start_exabgp()
    w.healthy()
    w.unhealthy()
    w.quiet()
    for _ in range(2):
        w.tick(1.0)
        w.probe(True)
    while w.vip_news:
        w.observe_vip()
    w.answer("error")  # the first announce refused
    assert w.state.parked
    w.quiet()
    parked = next(iter(w.state.parked.values()))
    assert parked.key not in w.rib
    w.tick(PARK)
    w.quiet()
    assert parked.key in w.rib


@pytest.mark.parametrize("outcome", ["timeout", "closed"])
def test_a_lost_answer_waits_for_the_relay_then_resends(outcome: str) -> None:
    w = World()
    w.start_exabgp()
    for _ in range(2):
        w.tick(1.0)
        w.probe(True)
    while w.vip_news:
        w.observe_vip()
    w.answer(outcome, applied=True)
    assert w.state.link is Link.DISCONNECTED and w.kills == 0  # desired: keep it
    mark = len(w.sent)
    w.tick(1.0)
    assert w.sent_since(mark) == []
    w.relay_back()
    w.quiet()
    assert actions(w.sent_since(mark)) == [("announce", str(V4)), ("announce", str(V6))]


def test_an_answer_from_a_replaced_connection_is_void() -> None:
    w = World()
    w.healthy()
    w.unhealthy()
    send = w.pending
    assert send is not None
    w.relay_drops()
    w.feed(ev.CommandDone(send.generation))  # late, from the old connection
    assert send.route.key in w.state.uncertain


def two_neighbors() -> Config:
    document = copy.deepcopy(DOCUMENT)
    neighbors = document["bgp"]["neighbors"]  # type: ignore[index]
    neighbors.append({**neighbors[0], "address": "192.0.2.5"})
    return parse_config(document)


def test_a_new_bgp_session_is_sent_its_routes_again_and_no_other() -> None:
    # ExaBGP keeps no adj-rib-out: a session that comes up holds nothing until the core sends.
    w = World(cfg=two_neighbors())
    w.healthy()
    w.quiet()
    mark = len(w.sent)
    w.feed(ev.SessionUp(ip_address("192.0.2.5")))
    w.quiet()
    again = w.sent_since(mark)
    assert actions(again) == [("announce", str(V4)), ("announce", str(V6))]
    assert {s.route.neighbor for s in again} == {ip_address("192.0.2.5")}
    mark = len(w.sent)
    w.feed(ev.SessionUp(ip_address("192.0.2.99")))  # not ours: nothing to send it
    w.quiet()
    assert w.sent_since(mark) == []


def test_a_session_up_again_while_its_announce_is_in_flight_is_sent_it_again() -> None:
    # ExaBGP may apply the command to the session that just ended: its `done` proves nothing.
    w = World()
    w.healthy()
    w.quiet()
    mark = len(w.sent)
    w.feed(ev.SessionUp(ip_address("192.0.2.1")))
    assert w.pending is not None and w.pending.route.prefix == V4
    w.feed(ev.SessionUp(ip_address("192.0.2.1")))  # that session ended, a new one is up
    w.quiet()
    assert actions(w.sent_since(mark)) == [
        ("announce", str(V4)),
        ("announce", str(V4)),
        ("announce", str(V6)),
    ]


def test_a_new_bgp_session_of_an_unhealthy_node_gets_nothing() -> None:
    w = World()
    w.healthy()
    w.unhealthy()
    w.quiet()
    mark = len(w.sent)
    w.feed(ev.SessionUp(ip_address("192.0.2.1")))
    w.quiet()
    assert w.sent_since(mark) == [] and not w.state.exposed()


# -- lifecycle


def test_drain_is_graceful_for_the_delay_then_withdrawn() -> None:
    w = World()
    w.healthy()
    w.feed(ev.DrainRequested())
    assert w.state.lifecycle is Lifecycle.DRAINING
    w.quiet()
    assert all(GRACEFUL_SHUTDOWN_COMMUNITY in r.communities for r in w.rib.values())
    w.tick(2.9)
    assert w.state.lifecycle is Lifecycle.DRAINING
    w.tick(0.1)
    assert w.state.lifecycle is Lifecycle.DRAINED
    w.quiet()
    assert not w.rib


@pytest.mark.parametrize("healthy", [True, False])
def test_drain_with_nothing_announced_is_drained_at_once(healthy: bool) -> None:
    w = World()
    if healthy:
        w.healthy()
        w.unhealthy()
        w.quiet()
    w.feed(ev.DrainRequested(client=1))
    assert w.state.lifecycle is Lifecycle.DRAINED
    assert w.replies[1][0].text == "drained: nothing announced"


@pytest.mark.parametrize("event", [ev.DrainRequested(), ev.StopRequested()])
def test_the_graceful_phase_ends_early_once_nothing_is_exposed(event: ev.Event) -> None:
    w = World()
    w.healthy()
    w.feed(event)
    w.quiet()
    w.unhealthy()
    w.quiet()
    assert w.state.lifecycle in (Lifecycle.DRAINED, Lifecycle.STOPPED)
    assert w.now < 3.0 + 3.0


@pytest.mark.parametrize("during", [Lifecycle.DRAINING, Lifecycle.DRAINED])
def test_undrain_returns_to_running(during: Lifecycle) -> None:
    w = World()
    w.healthy()
    w.feed(ev.DrainRequested())
    if during is Lifecycle.DRAINED:
        w.tick(3.0)
    assert w.state.lifecycle is during
    w.feed(ev.UndrainRequested(client=2))
    assert w.state.lifecycle is Lifecycle.RUNNING
    assert w.replies[2][0].text == "undrained: announcing whenever health is up"


def test_drain_and_undrain_do_not_revive_a_stop() -> None:
    w = World()
    w.healthy()
    w.feed(ev.StopRequested())
    w.feed(ev.UndrainRequested(client=1))
    w.feed(ev.DrainRequested(client=2))
    assert w.state.lifecycle is Lifecycle.STOPPING
    assert w.replies[1][0].text == "undrain recorded; the daemon is stopping"
    w.feed(ev.ReloadRequested(CONFIG, client=3))
    assert not w.replies[3][0].ok


def test_new_rise_applies_at_once_when_down_and_waits_when_up() -> None:
    w = World()
    slow = config()
    slow = dataclasses.replace(slow, apiserver=dataclasses.replace(slow.apiserver, rise=4))
    w.feed(ev.ReloadRequested(slow))
    assert w.state.settings.rise == 4
    w.feed(ev.ReloadRequested(CONFIG))
    w.healthy()
    w.feed(ev.ReloadRequested(slow))
    assert (w.state.settings.rise, w.state.health.state) == (2, Health.UP)
    w.unhealthy()
    assert w.state.settings.rise == 4


# -- probes and beats


def test_probes_on_a_drift_free_grid_and_a_late_one_is_logged() -> None:
    w = World()
    starts = []
    for dt in (0.0, 0.3, 0.7, 0.25, 0.75):
        if any(isinstance(e, StartProbe) for e in w.tick(dt)):
            starts.append(w.now)
            w.probe(True)
    assert starts == [0.0, 1.0, 2.0]
    w.tick(3.5)
    w.probe(True)
    assert any(isinstance(e, Log) and "skipped 2" in e.message for e in w.effects)


def test_every_tick_beats_between_probes() -> None:
    w = World()
    beats = [any(isinstance(e, Beat) for e in w.tick(0.2)) for _ in range(10)]
    assert all(beats)


# -- the interface


def test_withdraw_then_wait_then_remove_the_vip() -> None:
    w = World()
    w.healthy()
    w.unhealthy()
    w.quiet()
    assert not w.rib and w.lo == {V4, V6}
    w.tick(0.99)
    assert w.lo == {V4, V6}
    w.tick(0.01)
    assert w.lo == set()


def test_a_vip_wanted_again_before_removal_stays() -> None:
    w = World(cfg=config(withdraw_wait=5.0))
    w.healthy()
    w.unhealthy()
    w.quiet()
    for _ in range(2):
        w.tick(1.0)
        w.probe(True)
    w.quiet()
    w.tick(5.0)
    assert len(w.rib) == 2
    assert not any(isinstance(e, RemoveVip) for e in w.log)


def test_a_vip_deleted_by_hand_is_put_back(caplog: pytest.LogCaptureFixture) -> None:
    w = World()
    w.healthy()
    w.lo.discard(V4)
    w.feed(ev.VipObserved(V4, False))
    assert any(isinstance(e, AddVip) and e.vip == V4 for e in w.effects)
    assert any(isinstance(e, Log) and e.level == logging.WARNING for e in w.effects)


def test_a_vip_that_cannot_go_on_the_interface_is_not_announced() -> None:
    w = World()
    w.start_exabgp()
    for _ in range(2):
        w.tick(1.0)
        w.probe(True)
    w.vip_news.clear()
    w.feed(ev.VipFailed(V4, "no such device"))
    w.feed(ev.VipObserved(V6, True))
    w.quiet()
    assert {r.prefix for r in w.rib.values()} == {V6}
    assert any(isinstance(e, AddVip) and e.vip == V4 for e in w.tick(0.1))  # retried


def test_without_loopback_management_no_vip_effects() -> None:
    cfg = config()
    cfg = dataclasses.replace(cfg, loopback=dataclasses.replace(cfg.loopback, manage=False))
    w = World(cfg=cfg)
    w.healthy()
    assert len(w.rib) == 2
    assert not any(isinstance(e, (AddVip, RemoveVip)) for e in w.log)


def test_announce_and_withdraw_are_logged_once_each() -> None:
    w = World()
    w.healthy()
    w.tick(1.0)
    w.probe(True)
    w.unhealthy()
    w.quiet()
    events = [dict(e.fields).get("event") for e in w.log if isinstance(e, Log)]
    assert events.count("announce") == 2 and events.count("withdraw") == 2


def test_step_leaves_the_given_state_alone() -> None:
    state = initial(CONFIG, drained=False, now=0.0)
    before = dataclasses.replace(state)
    new, _ = step(state, ev.ProbeDone(ok(0.0)), 0.0)
    new, _ = step(new, ev.ProbeDone(failed(1.0)), 1.0)
    assert state == before and new is not state

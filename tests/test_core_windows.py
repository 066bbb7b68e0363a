"""The fail-open windows of the old decision code, each closed by `step` and shown here.

Each test names the window it closes; on the code before the core each of them failed
(the old `Applier` let the VIP leave with ExaBGP disconnected, the old loop beat while a
probe hung, and so on: see the docstrings).
"""

from __future__ import annotations

from core_world import World, config

from announcer.core import Link
from announcer.core import events as ev
from announcer.core.effects import Action, Beat, KillExabgp, RemoveVip, Reply, StartProbe
from announcer.lifecycle import Lifecycle

V4 = config().vips[0]


def test_lost_ack_of_a_withdraw_keeps_the_vip_and_kills_exabgp() -> None:
    """Old: `apply.py` counted "disconnected" as withdrawn; the VIP left `lo` while a frozen
    relay's ExaBGP still announced it (traffic blackholed until the relay was continued)."""
    w = World()
    w.healthy()
    w.unhealthy()
    assert w.pending is not None and w.pending.action is Action.WITHDRAW
    w.answer("timeout")  # relay frozen: no ack, and ExaBGP did not act on it
    assert any(isinstance(e, KillExabgp) for e in w.effects)
    for _ in range(30):  # far past withdraw_wait + the old 10 s removal cap
        w.tick(1.0)
        assert V4 in w.lo, "VIP left while ExaBGP may still announce it"
        if w.vip_news:
            w.observe_vip()
    w.exabgp_exits()
    w.tick(0.5)
    assert V4 in w.lo, "VIP left before withdraw_wait after ExaBGP died"
    w.tick(0.6)
    assert any(isinstance(e, RemoveVip) and e.vip == V4 for e in w.log)


def test_relay_gone_with_a_route_to_withdraw_kills_exabgp() -> None:
    """Old: `daemon.py` only disconnected the reconciler on a lost channel, never killed."""
    w = World()
    w.healthy()
    w.relay_drops()
    assert not any(isinstance(e, KillExabgp) for e in w.effects)  # healthy: keep announcing
    w.unhealthy()
    assert any(isinstance(e, KillExabgp) for e in w.log)
    assert w.state.link is Link.KILLING
    assert V4 in w.lo


def test_withdraw_answered_error_is_not_gone() -> None:
    """Old: `reconcile.py` counted a withdraw answered `error` as withdrawn."""
    w = World()
    w.healthy()
    w.unhealthy()
    w.answer("error")
    assert any(isinstance(e, KillExabgp) for e in w.effects)
    assert w.state.exposed(), "a refused withdraw must stay exposed"
    w.tick(5.0)
    assert V4 in w.lo


def test_stop_with_the_channel_lost_keeps_withdraw_wait() -> None:
    """Old: at SIGTERM with the channel lost the stopper skipped `withdraw_wait`."""
    w = World()
    w.healthy()
    w.relay_drops()
    w.feed(ev.StopRequested())
    w.tick(3.5)  # graceful phase over: nothing may stay, ExaBGP cannot be told: kill
    assert any(isinstance(e, KillExabgp) for e in w.log)
    assert V4 in w.lo
    w.exabgp_exits()
    w.tick(0.9)
    assert V4 in w.lo
    w.tick(0.2)
    w.quiet()
    assert not w.lo and w.exited and not w.rib


def test_stop_ends_with_nothing_announced_and_exabgp_stopped() -> None:
    """Old: the crash/stop path removed the VIPs before ExaBGP was stopped, without
    `withdraw_wait`, after a withdraw with a 1 s deadline."""
    w = World()
    w.healthy()
    w.feed(ev.StopRequested())
    assert w.state.lifecycle is Lifecycle.STOPPING
    w.tick(3.0)
    w.quiet()
    assert not w.rib and V4 in w.lo  # withdrawn and acknowledged, withdraw_wait running
    assert not w.exited
    w.tick(1.0)
    w.quiet()
    assert not w.lo and not w.alive and w.exited


def test_stuck_probe_stops_the_beat() -> None:
    """Old: `decide.py` beat while a probe was pending, for as long as it hung."""
    w = World()
    w.healthy()
    w.tick(1.0)
    assert any(isinstance(e, StartProbe) for e in w.effects)
    for _ in range(4):  # 2 s: within 2 * timeout + grace
        assert any(isinstance(e, Beat) for e in w.tick(0.5))
    assert not any(isinstance(e, Beat) for e in w.tick(0.5))
    assert not any(isinstance(e, Beat) for e in w.tick(5.0))
    w.probe(True)
    assert any(isinstance(e, Beat) for e in w.tick(0.1))


def test_drain_wait_racing_a_stop_is_not_told_withdrawn() -> None:
    """Old: `drain --wait` said "drained: routes withdrawn" when a SIGTERM came meanwhile."""
    w = World()
    w.healthy()
    w.feed(ev.DrainRequested(client=7, wait=True))
    w.feed(ev.StopRequested())
    (reply,) = w.replies[7]
    assert not reply.ok and "stopping" in reply.text
    w.tick(3.0)
    w.quiet()
    assert len(w.replies[7]) == 1


def test_drain_wait_answers_withdrawn_only_when_withdrawn() -> None:
    w = World()
    w.healthy()
    w.feed(ev.DrainRequested(client=1, wait=True))
    w.tick(3.0)
    assert w.pending is not None and not w.replies[1]
    w.quiet()
    assert w.replies[1] == [Reply(1, True, "drained: routes withdrawn")]
    assert not w.rib


def test_stop_during_drain_keeps_the_drain_deadline() -> None:
    """Old: SIGTERM during a drain restarted the graceful phase (twice `drain.delay`)."""
    w = World()
    w.healthy()
    w.feed(ev.DrainRequested())
    w.quiet()  # the graceful attributes are acknowledged
    w.tick(2.0)
    w.feed(ev.StopRequested())
    assert w.state.lifecycle is Lifecycle.STOPPING
    w.tick(1.0)  # 3 s after the drain: the graceful phase is over
    assert w.state.lifecycle is Lifecycle.STOPPED
    assert w.pending is not None and w.pending.action is Action.WITHDRAW


def test_stop_is_not_kept_waiting_by_a_restarting_reload() -> None:
    """Old: a SIGTERM waited behind a reload that restarted ExaBGP (~12 s)."""
    w = World()
    w.healthy()
    w.feed(ev.ReloadRequested(config(delay=2.0), restart_exabgp=True))
    w.feed(ev.StopRequested())
    assert w.state.lifecycle is Lifecycle.STOPPING
    w.exabgp_exits()
    w.tick(0.0)
    assert w.state.lifecycle is Lifecycle.STOPPED  # nothing exposed: withdrawn at once
    w.tick(1.0)
    w.quiet()
    assert w.exited and not w.lo


def test_second_stop_kills_exabgp_and_skips_withdraw_wait() -> None:
    w = World()
    w.healthy()
    w.feed(ev.StopRequested())
    w.feed(ev.StopRequested("SIGINT"))
    assert any(isinstance(e, KillExabgp) for e in w.effects)
    assert V4 in w.lo
    w.exabgp_exits()
    w.quiet()
    assert w.exited and not w.lo

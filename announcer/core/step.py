"""`step(state, event, now) -> (state, effects)`: the daemon's every decision, in one place.

Each event is handled on a copy of the state, then the same settling pass runs after every
event: graceful phases that are over end, VIPs are asked for, ExaBGP in doubt is killed, the
next command goes out, VIPs no router may route here any more leave (`announcer.core.vips`),
waiting clients are answered, and a finished stop stops ExaBGP and exits.

Lifecycle: a drain or stop with something exposed gets a graceful phase of `drain.delay`
seconds (announced, unattractive), then withdrawn; with nothing exposed it is withdrawn at
once. A stop during a drain keeps the drain's deadline (the graceful phase is never longer
than `drain.delay`); a second stop hurries: withdrawn at once, ExaBGP killed if it may still
announce. `drain --wait` is answered "withdrawn" only when nothing is exposed and the node is
drained; a stop or undrain first gets an error answer.

Probing (ticks, probes, crash triggers, the served check, the beat) is
`announcer.core.probing`.

Must not: do I/O, read a clock, or keep anything outside the returned state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from announcer.core import bfd, exabgp, probing, vips
from announcer.core.effects import Effect, Exit, Log, Reply, RestartExabgp
from announcer.core.effects import StopExabgp as StopExabgpEffect
from announcer.core.events import (
    BfdChanged,
    CommandDone,
    CommandError,
    CommandLost,
    CrashTriggered,
    DrainRequested,
    Event,
    ExabgpConnected,
    ExabgpDisconnected,
    ExabgpExited,
    ExabgpSilent,
    ProbeDone,
    ReloadRequested,
    ServedAnswered,
    SessionUp,
    StopRequested,
    Tick,
    UndrainRequested,
    VipFailed,
    VipObserved,
)
from announcer.core.state import CoreState, Link, Waiter, health_settings
from announcer.health import Health, HealthMachine
from announcer.lifecycle import Lifecycle

__all__ = ["CONFIRM_TIMEOUT", "step"]

# How long `drain --wait` may wait for acknowledgements after the graceful phase.
CONFIRM_TIMEOUT: Final = 5.0
_GRACEFUL: Final = {Lifecycle.DRAINING: Lifecycle.DRAINED, Lifecycle.STOPPING: Lifecycle.STOPPED}
_STOPPING: Final = (Lifecycle.STOPPING, Lifecycle.STOPPED)


def step(state: CoreState, event: Event, now: float) -> tuple[CoreState, list[Effect]]:
    """The state after `event` at monotonic time `now`, and what to do about it."""
    s = state.copy()
    out: list[Effect] = []
    if s.exited:
        _after_exit(event, out)
        return s, out
    _HANDLERS[type(event)](s, event, now, out)
    _settle(s, now, out)
    return s, out


def _after_exit(event: Event, out: list[Effect]) -> None:
    client = getattr(event, "client", None)
    if client is not None:
        out.append(Reply(client, isinstance(event, StopRequested), "stopped"))


# -- the settling pass


def _settle(s: CoreState, now: float, out: list[Effect]) -> None:
    _advance(s, now, out)
    vips.place(s, out)
    exabgp.in_doubt(s, out)
    exabgp.send_next(s, now, out)
    _log_announcing(s, out)
    vips.release(s, now, out)
    _answer_waiters(s, now, out)
    _finish_stop(s, out)


def _advance(s: CoreState, now: float, out: list[Effect]) -> None:
    if s.lifecycle not in _GRACEFUL or s.deadline is None:
        return
    if now >= s.deadline:
        _move(s, _GRACEFUL[s.lifecycle], "graceful phase over", out)
    elif not s.exposed():
        _move(s, _GRACEFUL[s.lifecycle], "nothing announced any more", out)


def _move(s: CoreState, lifecycle: Lifecycle, reason: str, out: list[Effect]) -> None:
    old, s.lifecycle, s.deadline = s.lifecycle, lifecycle, None
    message = f"lifecycle {old.value} -> {lifecycle.value} ({reason})"
    fields = (("event", "lifecycle"), ("old", old.value), ("new", lifecycle.value))
    out.append(Log(logging.INFO, message, (*fields, ("reason", reason))))


def _enter(s: CoreState, lifecycle: Lifecycle, reason: str, now: float, out: list[Effect]) -> None:
    if s.exposed():
        _move(s, lifecycle, reason, out)
        s.deadline = now + s.config.drain.delay
    else:
        _move(s, _GRACEFUL[lifecycle], f"{reason}; nothing announced", out)


def _log_announcing(s: CoreState, out: list[Effect]) -> None:
    now_announcing = frozenset(route.prefix for route in s.desired().values())
    for vip in sorted(now_announcing - s.announcing, key=str):
        out.append(Log(logging.INFO, f"announce {vip}", (("event", "announce"), ("vip", str(vip)))))
    for vip in sorted(s.announcing - now_announcing, key=str):
        why = s.vip_errors.get(vip) or s.reason()
        fields = (("event", "withdraw"), ("vip", str(vip)), ("reason", why))
        out.append(Log(logging.INFO, f"withdraw {vip} ({why})", fields))
    s.announcing = now_announcing


def _answer_waiters(s: CoreState, now: float, out: list[Effect]) -> None:
    still: list[Waiter] = []
    for waiter in s.waiters:
        answer = _drain_answer(s, waiter, now)
        if answer is None:
            still.append(waiter)
        else:
            out.append(Reply(waiter.client, *answer))
    s.waiters = still


def _drain_answer(s: CoreState, waiter: Waiter, now: float) -> tuple[bool, str] | None:
    if s.lifecycle in _STOPPING:
        return (False, "stopping before the withdrawal was confirmed")
    if s.lifecycle is Lifecycle.RUNNING:
        return (False, "undrained before the withdrawal finished")
    if s.lifecycle is Lifecycle.DRAINED and not s.exposed():
        return (True, "drained: routes withdrawn")
    if now < waiter.deadline:
        return None
    if s.lifecycle is Lifecycle.DRAINING:
        return (False, "still draining; see `announcer status`")
    return (False, "drained, but exabgp has not confirmed the withdrawal yet")


def _finish_stop(s: CoreState, out: list[Effect]) -> None:
    if s.lifecycle is not Lifecycle.STOPPED or s.exited or s.exposed():
        return
    if s.placed or s.adding or s.removing:
        return
    if s.link is Link.DEAD:
        s.exited = True
        out.extend(Reply(client, True, "stopped") for client in s.stop_clients)
        s.stop_clients = []
        out.append(Exit())
    elif s.link is not Link.KILLING:
        exabgp.dead_soon(s)
        out.append(StopExabgpEffect())


# -- the events


def _drain(s: CoreState, e: DrainRequested, now: float, out: list[Effect]) -> None:
    s.drained = True
    if s.lifecycle is Lifecycle.RUNNING:
        _enter(s, Lifecycle.DRAINING, "drain requested", now, out)
    if e.client is None:
        return
    if e.wait:
        deadline = now + s.config.drain.delay + CONFIRM_TIMEOUT
        s.waiters.append(Waiter(e.client, deadline))
    elif s.lifecycle is Lifecycle.DRAINING:
        delay = s.config.drain.delay
        out.append(
            Reply(e.client, True, f"draining: graceful shutdown for {delay:g} s, then withdrawn")
        )
    elif s.lifecycle is Lifecycle.DRAINED:
        out.append(Reply(e.client, True, "drained: nothing announced"))
    else:
        out.append(Reply(e.client, True, f"drain recorded; the daemon is {s.lifecycle.value}"))


def _undrain(s: CoreState, e: UndrainRequested, _now: float, out: list[Effect]) -> None:
    s.drained = False
    if s.lifecycle in (Lifecycle.DRAINING, Lifecycle.DRAINED):
        _move(s, Lifecycle.RUNNING, "undrain requested", out)
    if e.client is not None:
        text = (
            "undrained: announcing whenever health is up"
            if s.lifecycle is Lifecycle.RUNNING
            else f"undrain recorded; the daemon is {s.lifecycle.value}"
        )
        out.append(Reply(e.client, True, text))


def _stop(s: CoreState, e: StopRequested, now: float, out: list[Effect]) -> None:
    if e.client is not None:
        s.stop_clients.append(e.client)
    if s.lifecycle is Lifecycle.DRAINING:
        s.lifecycle = Lifecycle.STOPPING  # the drain's graceful phase goes on, not again
        out.append(Log(logging.INFO, f"{e.reason}: stopping, graceful phase already running"))
    elif s.lifecycle is not Lifecycle.STOPPING and s.lifecycle is not Lifecycle.STOPPED:
        _enter(s, Lifecycle.STOPPING, f"{e.reason}: stop requested", now, out)
    elif not s.hurry:
        s.hurry = True
        _move(s, Lifecycle.STOPPED, f"{e.reason} again: withdrawing at once", out)
        if s.exposed():
            exabgp.kill(s, "stop requested again", out)


def _reload(s: CoreState, e: ReloadRequested, _now: float, out: list[Effect]) -> None:
    if s.lifecycle in _STOPPING:
        if e.client is not None:
            out.append(Reply(e.client, False, "stopping: reload ignored"))
        return
    settings = health_settings(e.config)
    if settings == s.settings:
        s.pending_settings = None
    elif s.health.state is Health.DOWN:
        s.settings = settings
        s.health = HealthMachine(settings, now=s.health.since)
    else:
        s.pending_settings = settings
    s.config = e.config
    bfd.forget_unconfigured(s)
    if e.restart_exabgp:
        exabgp.dead_soon(s)
        out.append(RestartExabgp())
    if e.client is not None:
        out.append(Reply(e.client, True, "reloaded"))


def _connected(s: CoreState, _e: ExabgpConnected, _now: float, out: list[Effect]) -> None:
    exabgp.connected(s)


def _disconnected(s: CoreState, _e: ExabgpDisconnected, _now: float, out: list[Effect]) -> None:
    exabgp.disconnected(s)


def _exited(s: CoreState, _e: ExabgpExited, _now: float, out: list[Effect]) -> None:
    exabgp.dead(s)


def _silent(s: CoreState, _e: ExabgpSilent, _now: float, out: list[Effect]) -> None:
    exabgp.kill(s, "exabgp did not answer in time", out)


def _session_up(s: CoreState, e: SessionUp, _now: float, out: list[Effect]) -> None:
    exabgp.session_up(s, e.neighbor)


def _done(s: CoreState, e: CommandDone, now: float, out: list[Effect]) -> None:
    exabgp.answered(s, e.generation, "done", now, out)


def _error(s: CoreState, e: CommandError, now: float, out: list[Effect]) -> None:
    exabgp.answered(s, e.generation, "error", now, out)


def _lost(s: CoreState, e: CommandLost, now: float, out: list[Effect]) -> None:
    exabgp.answered(s, e.generation, e.why or "lost", now, out)


def _vip_seen(s: CoreState, e: VipObserved, _now: float, out: list[Effect]) -> None:
    vips.observed(s, e.vip, e.present, out)


def _vip_failed(s: CoreState, e: VipFailed, _now: float, out: list[Effect]) -> None:
    vips.failed(s, e.vip, e.error, out)


def _bfd(s: CoreState, e: BfdChanged, now: float, out: list[Effect]) -> None:
    bfd.changed(s, e, now, out)


_HANDLERS: Final[dict[type[Event], Callable[..., None]]] = {
    Tick: probing.tick,
    ProbeDone: probing.probed,
    CrashTriggered: probing.crashed,
    ServedAnswered: probing.served,
    DrainRequested: _drain,
    UndrainRequested: _undrain,
    StopRequested: _stop,
    ReloadRequested: _reload,
    ExabgpConnected: _connected,
    ExabgpDisconnected: _disconnected,
    ExabgpExited: _exited,
    ExabgpSilent: _silent,
    SessionUp: _session_up,
    CommandDone: _done,
    CommandError: _error,
    CommandLost: _lost,
    VipObserved: _vip_seen,
    VipFailed: _vip_failed,
    BfdChanged: _bfd,
}

"""The core's side of ExaBGP: which command goes next, what an answer means, and when to
kill ExaBGP because we can no longer know what it announces.

One command at a time. Withdraws first (a route announced too long attracts traffic this node
should not get), then announces of desired routes whose VIP is on the interface. Answers:
- done: `installed` follows the command;
- error to an announce: the route is parked (retried after `PARK` seconds or when its
  attributes change) and everything installed becomes uncertain (resync);
- error to a withdraw: nobody knows what ExaBGP holds then, so ExaBGP is killed;
- lost (ack timeout, channel closed): everything becomes uncertain and the link is down.
A link that is down while a route that is not desired may still be held: kill ExaBGP (a
closed TCP session is the fastest withdraw there is). Known dead: nothing is held.
ExaBGP keeps no adj-rib-out, so it never replays a route to a session by itself: when a
session comes up, every route for that neighbor is sent again (`session_up`). A session that
comes up while the daemon is frozen therefore gets nothing.

Must not: do I/O, read a clock or render commands (the shell renders `Send`).
"""

from __future__ import annotations

import dataclasses
import logging

from announcer.config.model import IPAddress
from announcer.core.effects import Action, Effect, KillExabgp, Log, Send
from announcer.core.state import CoreState, Inflight, Link
from announcer.routes import Route, sort_key

__all__ = [
    "PARK",
    "answered",
    "connected",
    "dead",
    "dead_soon",
    "disconnected",
    "in_doubt",
    "kill",
    "send_next",
    "session_up",
]

PARK = 5.0


def send_next(s: CoreState, now: float, out: list[Effect]) -> None:
    """Send the first command of the difference, if ExaBGP is there and nothing is in flight."""
    if s.link is not Link.CONNECTED or s.inflight is not None:
        return
    if s.parked and now >= s.parked_until:
        s.parked.clear()
    command = _next(s)
    if command is not None:
        action, route = command
        s.inflight = Inflight(action, route, s.generation)
        out.append(Send(action, route, s.generation))


def _next(s: CoreState) -> tuple[Action, Route] | None:
    desired = s.desired()
    known = {**s.uncertain, **s.installed}
    stale = [route for key, route in known.items() if key not in desired]
    if stale:
        return (Action.WITHDRAW, min(stale, key=sort_key))
    missing = [
        route
        for key, route in desired.items()
        if s.installed.get(key) != route and s.parked.get(key) != route
    ]
    if missing:
        return (Action.ANNOUNCE, min(missing, key=sort_key))
    return None


def answered(s: CoreState, generation: int, outcome: str, now: float, out: list[Effect]) -> None:
    """`outcome`: "done", "error", or why the answer was lost."""
    flight = s.inflight
    if flight is None or flight.generation != generation:
        return  # the answer of a replaced connection: already uncertain
    s.inflight = None
    route, key = flight.route, flight.route.key
    if outcome == "done" and flight.superseded:
        s.installed.pop(key, None)
        s.uncertain[key] = route  # sent again (or withdrawn again) to the new session
    elif outcome == "done":
        s.uncertain.pop(key, None)
        if flight.action is Action.ANNOUNCE:
            s.installed[key] = route
        else:
            s.installed.pop(key, None)
    elif outcome == "error":
        _refused(s, flight, now, out)
    else:
        _forget_installed(s)
        s.uncertain[key] = route
        s.link = Link.DISCONNECTED
        s.generation += 1
        out.append(_log(logging.WARNING, f"exabgp channel lost ({outcome}) at {_what(flight)}"))


def _refused(s: CoreState, flight: Inflight, now: float, out: list[Effect]) -> None:
    out.append(_log(logging.WARNING, f"exabgp refused a command, resynchronising: {_what(flight)}"))
    _forget_installed(s)
    s.uncertain[flight.route.key] = flight.route
    if flight.action is Action.ANNOUNCE:
        s.parked[flight.route.key] = flight.route
        s.parked_until = now + PARK
    else:
        kill(s, f"exabgp refused to withdraw {flight.route.prefix}", out)


def connected(s: CoreState) -> None:
    """A relay connected: resend everything (ExaBGP may hold what we were unsure of)."""
    if s.link is Link.KILLING:
        return  # the connection of a process on its way out; its successor will connect
    if s.inflight is not None:
        s.uncertain[s.inflight.route.key] = s.inflight.route
        s.inflight = None
    _forget_installed(s)
    s.parked.clear()
    s.link = Link.CONNECTED
    s.killed_for = None
    s.generation += 1


def session_up(s: CoreState, neighbor: IPAddress) -> None:
    """ExaBGP's session with `neighbor` is new: it holds nothing we sent before (ExaBGP
    replays nothing), save a command it queued while the session was down. Everything for
    that neighbor becomes uncertain: the desired routes are announced again, the rest
    withdrawn; so does the command in flight to it, whatever its answer (ExaBGP may have
    applied it to the session that just ended)."""
    for key, route in list(s.installed.items()):
        if route.neighbor == neighbor:
            s.uncertain[key] = s.installed.pop(key)
    if s.inflight is not None and s.inflight.route.neighbor == neighbor:
        s.inflight = dataclasses.replace(s.inflight, superseded=True)


def disconnected(s: CoreState) -> None:
    if s.link is not Link.CONNECTED:
        return
    if s.inflight is not None:
        s.uncertain[s.inflight.route.key] = s.inflight.route
        s.inflight = None
    _forget_installed(s)
    s.link = Link.DISCONNECTED
    s.generation += 1


def dead(s: CoreState) -> None:
    """ExaBGP is known gone: its sessions closed, it announces nothing."""
    s.installed.clear()
    s.uncertain.clear()
    s.parked.clear()
    s.inflight = None
    s.link = Link.DEAD
    s.generation += 1


def dead_soon(s: CoreState) -> None:
    """ExaBGP is being stopped or killed: send nothing; what it may hold stays exposed until
    it is known gone (`dead`)."""
    if s.link is Link.DEAD:
        return
    if s.inflight is not None:
        s.uncertain[s.inflight.route.key] = s.inflight.route
        s.inflight = None
    s.link = Link.KILLING
    s.generation += 1


def kill(s: CoreState, reason: str, out: list[Effect]) -> None:
    if s.link in (Link.KILLING, Link.DEAD):
        return
    dead_soon(s)
    s.killed_for = reason
    out.append(KillExabgp(reason))
    out.append(_log(logging.WARNING, f"killing exabgp: {reason}"))


def in_doubt(s: CoreState, out: list[Effect]) -> None:
    """No relay, yet ExaBGP may hold a route that must go: kill it."""
    if s.link is not Link.DISCONNECTED:
        return
    desired = s.desired()
    stale = sorted((r for k, r in s.exposed().items() if k not in desired), key=sort_key)
    if stale:
        kill(s, f"cannot withdraw {stale[0].prefix}: no relay connected", out)


def _forget_installed(s: CoreState) -> None:
    s.uncertain.update(s.installed)
    s.installed.clear()


def _what(flight: Inflight) -> str:
    return f"{flight.action.value} {flight.route.prefix} to {flight.route.neighbor}"


def _log(level: int, message: str) -> Log:
    return Log(level, message, (("event", "exabgp"),))

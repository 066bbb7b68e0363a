"""The core's probing: when the next probe is due, what a crash trigger does, and the check
whether anyone serves the VIP before a success is counted.

- Schedule: `next_probe` is the time the next probe is due, from `announcer.cadence` after
  each probe (fast confirmation while FALLING, `min_healthy` met to the probe on the way up,
  `interval` otherwise, never before the last probe ended). A `Tick` at or after it starts
  the probe; the shell wakes the loop at `next_probe`.
- Crash trigger (`CrashTriggered`): the probe starts at once; during a probe, the next one
  starts as soon as it ends (that probe may have started before the crash). When that probe
  is refused and leaves health FALLING, the confirming probes follow at once instead of at
  `fast_interval`: the watched connection was lost, its reconnect and the probe were refused,
  so nothing listens on the port, and a look 0.1 s later would only delay the withdraw. `fall`
  still counts probes; a probe that times out (a lost probe) is confirmed at `fast_interval`
  as always.
- Nobody serves (`CheckServed`/`ServedAnswered`): a success while health is not UP, the node
  running and exposing nothing, with no VIP on the interface, is held while the shell asks
  `announcer.served.anyone_serves`; then it is observed with `unserved=not served`: the first
  healthy answer announces when nobody else serves the VIP, `rise` and `min_healthy` apply
  when someone does. The probe counts as running until the answer (no other probe starts).

The beat proves the loop is alive: it is emitted on a tick, unless a probe has been running
past `probe_bound` (then the relay's heartbeat lapses and ExaBGP is killed, fail closed).

Must not: do I/O, read a clock, or decide health (`announcer.health` does).
"""

from __future__ import annotations

import logging
import math
from typing import Final
from urllib.parse import urlsplit

from announcer.cadence import Cadence, Counters, next_probe_at
from announcer.core import vips
from announcer.core.effects import Beat, CheckServed, Effect, Log, StartProbe
from announcer.core.events import CrashTriggered, ProbeDone, ServedAnswered, Tick
from announcer.core.state import HISTORY, CoreState
from announcer.health import Health, HealthMachine, ProbeResult
from announcer.lifecycle import Lifecycle

__all__ = ["PROBE_GRACE", "cadence_of", "crashed", "probe_bound", "probed", "served", "tick"]

# A probe makes at most two requests of `apiserver.timeout` each; past that and this much
# more it is stuck outside its deadline.
PROBE_GRACE: Final = 1.0


def probe_bound(s: CoreState) -> float:
    bound = 2 * s.config.apiserver.timeout + PROBE_GRACE
    if s.awaiting_served is not None:
        bound += s.config.apiserver.fast_interval
    return bound


def cadence_of(s: CoreState) -> Cadence:
    a = s.config.apiserver
    return Cadence(
        interval=a.interval,
        fast_interval=a.fast_interval,
        rise=s.settings.rise,
        min_healthy=s.settings.min_healthy,
    )


def tick(s: CoreState, _e: Tick, now: float, out: list[Effect]) -> None:
    started = s.probe_started
    _start_if_due(s, now, out)
    if started is None or now - started <= probe_bound(s):
        out.append(Beat())
    elif now - started - probe_bound(s) < s.config.apiserver.interval:
        out.append(Log(logging.ERROR, "probe stuck past its deadline: not beating"))
    vips.place(s, out, retry=True)


def crashed(s: CoreState, e: CrashTriggered, now: float, out: list[Effect]) -> None:
    fields = (("event", "crash-trigger"), ("reason", e.reason))
    out.append(Log(logging.INFO, f"apiserver connection lost ({e.reason}): probing now", fields))
    s.after_crash = True
    if s.probe_started is None:
        s.next_probe = now
        _start_if_due(s, now, out)
    else:
        s.probe_again = True


def probed(s: CoreState, e: ProbeDone, now: float, out: list[Effect]) -> None:
    if s.probe_started is None or s.awaiting_served is not None:
        return
    if e.result.ok and _ask_served(s):
        s.awaiting_served = e.result
        a = s.config.apiserver
        addresses = tuple(vip.network_address for vip in s.config.vips)
        out.append(CheckServed(addresses, _port(a.url), a.fast_interval))
        return
    _conclude(s, e.result, now, unserved=False, out=out)


def served(s: CoreState, e: ServedAnswered, now: float, out: list[Effect]) -> None:
    result, s.awaiting_served = s.awaiting_served, None
    if result is None or s.probe_started is None:
        return
    if not e.served:
        fields = (("event", "unserved"), ("reason", e.reason))
        out.append(Log(logging.INFO, f"nobody serves the VIP ({e.reason})", fields))
    _conclude(s, result, now, unserved=not e.served and _ask_served(s), out=out)


def _start_if_due(s: CoreState, now: float, out: list[Effect]) -> None:
    if s.probe_started is None and now >= s.next_probe and not s.exited:
        s.probe_started = now
        out.append(StartProbe())


def _ask_served(s: CoreState) -> bool:
    """Whether a success now needs the served check: it could go UP at once, and no VIP of
    this node is on the interface or announced (the check would reach this node itself)."""
    if s.health.announceable or s.lifecycle is not Lifecycle.RUNNING or not s.config.vips:
        return False
    return not (s.exposed() or s.placed or s.adding or s.removing)


def _refused_after_crash(s: CoreState) -> bool:
    """Whether the probe that ended followed a crash trigger (or such a probe's confirmation),
    was refused and left health FALLING: then the next probe confirms at once."""
    result = s.last_probe
    s.after_crash = (
        s.after_crash
        and result is not None
        and not result.ok
        and result.reason == "refused"
        and s.health.state is Health.FALLING
    )
    return s.after_crash


def _port(url: str) -> int:
    return urlsplit(url).port or 443


def _conclude(
    s: CoreState, result: ProbeResult, now: float, *, unserved: bool, out: list[Effect]
) -> None:
    s.probe_started = None
    s.last_probe = result
    transition = s.health.observe(result, now, unserved=unserved)
    if transition is not None:
        s.transitions = (*s.transitions, transition)[-HISTORY:]
        message = f"health {transition.old.value} -> {transition.new.value} ({transition.reason})"
        fields = (
            ("event", "transition"),
            ("old", transition.old.value),
            ("new", transition.new.value),
            ("reason", transition.reason),
        )
        out.append(Log(logging.INFO, message, fields))
    if s.pending_settings is not None and s.health.state is Health.DOWN:
        s.settings, s.pending_settings = s.pending_settings, None
        s.health = HealthMachine(s.settings, now=now)
    _schedule(s, now, out)


def _schedule(s: CoreState, now: float, out: list[Effect]) -> None:
    if s.probe_again:  # the probe that ended may predate the crash: `after_crash` waits
        s.probe_again, s.next_probe = False, now
        return
    if _refused_after_crash(s):
        s.next_probe = now
        return
    cadence = cadence_of(s)
    due = s.next_probe
    planned = next_probe_at(cadence, Counters.of(s.health), due=due, ended=due)
    late = now - planned
    if late >= cadence.interval:
        skipped = math.floor(late / cadence.interval) + 1
        message = f"decision loop fell behind: skipped {skipped} tick(s)"
        out.append(Log(logging.WARNING, message))
    s.next_probe = max(planned, now)

"""The reconciler: the one writer to ExaBGP, turning "these routes should be announced" into
commands, one at a time, every acknowledgement checked.

It owns three sets, keyed by (neighbor, prefix):
- `desired`: what should be announced (`set_desired`, from `announcer.routes`);
- `installed`: what ExaBGP acknowledged with `done`;
- uncertain: what ExaBGP may or may not hold (after an `error`, a lost connection or a lost
  acknowledgement): such routes are withdrawn unless desired, and re-announced if desired.

Each step sends the first command of the difference:
1. withdraw every installed or uncertain route that is not desired, then
2. announce every desired route that is not installed with exactly these attributes. A route
   whose attributes changed is simply announced again: ExaBGP replaces the path, while a
   withdraw first would make the router drop this node for a moment.
Withdraws go first because a route announced too long attracts traffic this node should not
get (guarantees 1 and 4), while one announced a little late only costs spare capacity. The
difference is recomputed after every acknowledgement, so a change of `desired` while a
command is in flight is taken into account by the very next command.

Outcomes of a command:
- `done`: `installed` follows the command.
- `error`: logged (WARNING, with the command) and reported through `on_error`; then RESYNC:
  everything installed becomes uncertain, so every route not desired is withdrawn and every
  desired one announced again. A withdraw answered `error` is final: ExaBGP says `error` to
  a withdraw only for a neighbor it does not have or a line it cannot parse (a withdraw
  repeats its announce's prefix and next hop, and one for a route it does not hold is
  `done`). An announce answered `error` is parked: not sent again until
  `retry_delays` have passed or its attributes change, so a route ExaBGP keeps refusing
  does not become a command storm.
- `ChannelClosed` or `TimeoutError` (the channel closes itself after a lost ack, since acks
  carry no id): nothing is sent until `replay()`, which the daemon calls on the next relay
  connection. Replay treats everything as uncertain, like RESYNC: if ExaBGP restarted, the
  withdraws of stale routes are answered `done` harmlessly; if only the relay restarted,
  they remove what the old connection left behind. An answer that arrives after `replay()`
  belongs to the replaced connection and only makes its route uncertain.

It must not render routes itself (`announcer.routes` does), talk to ExaBGP other than through
a `RouteSink`, or sleep except to wait for work.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from announcer.routes import Route, RouteKey, render_announce, render_withdraw, sort_key
from announcer.speaker.errors import ChannelClosed

__all__ = ["FailureKind", "Reconciler", "RouteSink", "SinkFailure"]

log = logging.getLogger(__name__)

RETRY_DELAYS: Final = (1.0, 2.0, 5.0, 10.0, 30.0)


class RouteSink(Protocol):
    """Where commands go: `announcer.speaker.channel.Channel` in the daemon."""

    async def send(self, command: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        """True on `done`, False on `error`; raises ChannelClosed or TimeoutError."""
        ...


class FailureKind(enum.Enum):
    ERROR = "error"  # ExaBGP answered `error`
    TIMEOUT = "timeout"  # no acknowledgement in time: the channel closed itself
    CLOSED = "closed"  # the channel is gone


@dataclass(frozen=True, slots=True)
class SinkFailure:
    """A command that did not get `done`, for the daemon's log, metrics and escalation."""

    kind: FailureKind
    command: str


class _Action(enum.Enum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"


class Reconciler:
    """Keeps ExaBGP's routes equal to `desired`; run `run()` as a task for the process life.

    `sink` may be None when no relay is connected yet: then nothing is sent until
    `replay(sink)`.
    """

    def __init__(
        self,
        sink: RouteSink | None,
        *,
        ack_timeout: float,
        on_error: Callable[[SinkFailure], None],
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        if not retry_delays:
            raise ValueError("retry_delays must not be empty")
        self._sink = sink
        self._ack_timeout = ack_timeout
        self._on_error = on_error
        self._retry_delays = tuple(retry_delays)
        self._retries = 0
        self._generation = 0  # bumped by replay() and disconnect(): older answers are void
        self._desired: dict[RouteKey, Route] = {}
        self._installed: dict[RouteKey, Route] = {}
        self._uncertain: dict[RouteKey, Route] = {}
        self._parked: dict[RouteKey, Route] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()

    @property
    def desired(self) -> frozenset[Route]:
        return frozenset(self._desired.values())

    @property
    def installed(self) -> frozenset[Route]:
        """The routes ExaBGP acknowledged and still holds as far as we know."""
        return frozenset(self._installed.values())

    @property
    def connected(self) -> bool:
        return self._sink is not None

    @property
    def converged(self) -> bool:
        """ExaBGP holds exactly the desired routes, and nothing we are unsure about."""
        return not self._uncertain and self._installed == self._desired

    def set_desired(self, routes: Iterable[Route]) -> None:
        """Replace the desired set. Raises `RouteError` for a route that cannot be rendered
        and ValueError for two routes with one key; `desired` is unchanged then."""
        desired: dict[RouteKey, Route] = {}
        for route in routes:
            render_announce(route)
            render_withdraw(route)
            if desired.setdefault(route.key, route) != route:
                raise ValueError(f"two routes for {route.prefix} to {route.neighbor}")
        if desired != self._desired:
            self._desired = desired
            # a parked route is retried at once when its attributes change
            self._parked = {k: r for k, r in self._parked.items() if desired.get(k) == r}
            self._changed_state()

    def replay(self, sink: RouteSink | None = None) -> None:
        """ExaBGP (or its relay) reconnected, on `sink` if given: resend everything."""
        if sink is not None:
            self._sink = sink
        self._generation += 1
        self._forget_installed()
        self._parked.clear()
        self._retries = 0
        self._changed_state()

    def disconnect(self) -> None:
        """The relay is gone (the daemon saw it first): send nothing until `replay()`."""
        self._sink = None
        self._generation += 1
        self._forget_installed()
        self._changed_state()

    async def wait_converged(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for `converged`; return whether it was reached."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    if self.converged:
                        return True
                    await changed.wait()
        return self.converged

    async def run(self) -> None:
        """Send the difference, forever; cancel to stop."""
        while True:
            self._wake.clear()
            sink = self._sink
            step = None if sink is None else self._next_step()
            if sink is None or step is None:
                await self._wait_for_work()
            else:
                await self._apply(sink, *step)

    def _next_step(self) -> tuple[_Action, Route] | None:
        known = {**self._uncertain, **self._installed}
        stale = [route for key, route in known.items() if key not in self._desired]
        if stale:
            return (_Action.WITHDRAW, min(stale, key=sort_key))
        missing = [
            route
            for key, route in self._desired.items()
            if self._installed.get(key) != route and self._parked.get(key) != route
        ]
        if missing:
            return (_Action.ANNOUNCE, min(missing, key=sort_key))
        return None

    async def _wait_for_work(self) -> None:
        if not self._parked:
            self._retries = 0
            await self._wake.wait()
            return
        delay = self._retry_delays[min(self._retries, len(self._retry_delays) - 1)]
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            self._retries += 1
            self._parked.clear()

    async def _apply(self, sink: RouteSink, action: _Action, route: Route) -> None:
        announce = action is _Action.ANNOUNCE
        command = render_announce(route) if announce else render_withdraw(route)
        generation = self._generation
        outcome: bool | FailureKind
        try:
            outcome = await sink.send(command, timeout=self._ack_timeout)
        except ChannelClosed:
            outcome = FailureKind.CLOSED
        except TimeoutError:
            outcome = FailureKind.TIMEOUT
        except asyncio.CancelledError:
            self._void(route)
            raise
        if generation != self._generation:
            self._void(route)  # answered on a connection that replay() already replaced
        elif outcome is True:
            self._acknowledged(action, route)
        elif outcome is False:
            self._refused(action, route, command)
        else:
            self._lost(route, SinkFailure(outcome, command))
        self._changed_state()

    def _acknowledged(self, action: _Action, route: Route) -> None:
        log.debug("exabgp: done: %s %s to %s", action.value, route.prefix, route.neighbor)
        self._uncertain.pop(route.key, None)
        if action is _Action.ANNOUNCE:
            self._installed[route.key] = route
        else:
            self._installed.pop(route.key, None)

    def _refused(self, action: _Action, route: Route, command: str) -> None:
        log.warning(
            "exabgp refused a command, resynchronising: %s", command, extra={"command": command}
        )
        self._forget_installed()
        if action is _Action.ANNOUNCE:
            self._uncertain[route.key] = route
            self._parked[route.key] = route
        else:
            self._uncertain.pop(route.key, None)
        self._report(SinkFailure(FailureKind.ERROR, command))

    def _lost(self, route: Route, failure: SinkFailure) -> None:
        log.warning(
            "exabgp channel lost (%s) at: %s; waiting for replay",
            failure.kind.value,
            failure.command,
            extra={"command": failure.command},
        )
        self._sink = None
        self._forget_installed()
        self._uncertain[route.key] = route
        self._report(failure)

    def _void(self, route: Route) -> None:
        self._installed.pop(route.key, None)
        self._uncertain[route.key] = route

    def _forget_installed(self) -> None:
        self._uncertain.update(self._installed)
        self._installed.clear()

    def _report(self, failure: SinkFailure) -> None:
        try:
            self._on_error(failure)
        except Exception:
            log.exception("on_error callback failed for %s", failure)

    def _changed_state(self) -> None:
        self._wake.set()
        self._changed.set()
        self._changed = asyncio.Event()

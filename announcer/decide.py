"""The decision loop: every `apiserver.interval` seconds probe, update the state, apply.

```
tick: beat (relay heartbeat + systemd watchdog) -> probe (its own deadline, below interval)
      -> NodeState.observe -> NodeState.advance (graceful phases) -> Applier.apply(verdict)
```
The schedule is drift-free on the loop's clock: the next probe is due `interval` after the
previous one was due, not after it ended; a loop that fell behind (a stopped process, a slow
host) skips the ticks it missed instead of probing in a burst. Between probes the loop also
wakes to beat every `pulse` seconds (so a long interval never starves the relay's dead-man
switch or systemd's watchdog), at the end of a graceful phase, and when `wake()` is called
(drain, undrain, stop, reload, ExaBGP back): those decide again without probing.

One probe at a time: the tick awaits its probe. The beat is what proves this loop, not just
the process, is alive: it must not be moved to a timer of its own.

Time goes through a `Clock` (the loop's in the daemon, a virtual one in tests). Must not: do
I/O itself (the probe, the beat and the applier are injected) or decide what to announce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

from announcer.apply import Applier
from announcer.health import ProbeResult, Transition
from announcer.reconcile import Reconciler
from announcer.state import NodeState

__all__ = ["Clock", "DecisionLoop", "LoopClock", "ProbeSource", "next_deadline"]

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def wait(self, event: asyncio.Event, deadline: float) -> bool:
        """Wait until `event` is set (True) or `deadline` passes (False)."""
        ...


class LoopClock:
    """The running event loop's clock (monotonic)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait(self, event: asyncio.Event, deadline: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await event.wait()
        return event.is_set()


class ProbeSource(Protocol):
    async def probe(self) -> ProbeResult: ...


def next_deadline(previous: float, now: float, interval: float) -> tuple[float, int]:
    """The first deadline on the grid `previous + k * interval` (k >= 1) after `now`, and how
    many grid points were skipped to get there."""
    steps = max(1, math.floor((now - previous) / interval) + 1)
    deadline = previous + steps * interval
    while deadline <= now:  # float rounding at an exact multiple
        steps += 1
        deadline = previous + steps * interval
    return deadline, steps - 1


class DecisionLoop:
    """Run `run()` as a task for the life of the daemon."""

    def __init__(
        self,
        state: NodeState,
        *,
        check: ProbeSource,
        applier: Applier,
        reconciler: Reconciler,
        clock: Clock,
        beat: Callable[[], Awaitable[None]],
        pulse: float,
        on_decided: Callable[[], None] = lambda: None,
        on_probed: Callable[[ProbeResult, Transition | None], None] = lambda _r, _t: None,
    ) -> None:
        self._state = state
        self._check = check
        self._applier = applier
        self._reconciler = reconciler
        self._clock = clock
        self._beat = beat
        self.pulse = pulse
        self._on_decided = on_decided
        self._on_probed = on_probed
        self._wake = asyncio.Event()
        self._decided = asyncio.Event()
        self.probes = 0
        self.skipped = 0

    def wake(self) -> None:
        """Decide again now, without waiting for the next tick."""
        self._wake.set()

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        """Wait (on the loop's clock) until `predicate()` holds after a decision."""
        deadline = self._clock.now() + timeout
        while not predicate():
            decided = self._decided
            if not await self._clock.wait(decided, deadline):
                return predicate()
        return True

    async def run(self) -> None:
        due = self._clock.now()
        while True:
            self._wake.clear()  # before deciding: a wake() during the decision is kept
            await self._beat()
            if self._clock.now() >= due:
                await self.probe_once()
                due, skipped = next_deadline(due, self._clock.now(), self._interval)
                self._note_skipped(skipped)
            await self.decide()
            wake_at = min(due, self._clock.now() + self.pulse)
            if (deadline := self._state.deadline) is not None:
                wake_at = min(wake_at, deadline)
            await self._clock.wait(self._wake, wake_at)

    async def probe_once(self) -> None:
        result = await self._probing()
        transition = self._state.observe(result, self._clock.now())
        self.probes += 1
        self._on_probed(result, transition)

    async def decide(self) -> None:
        now = self._clock.now()
        self._state.advance(now, announcing=bool(self._reconciler.installed))
        await self._applier.apply(self._state.verdict(), now)
        self._decided.set()
        self._decided = asyncio.Event()
        self._on_decided()

    @property
    def _interval(self) -> float:
        return self._state.config.apiserver.interval

    async def _probing(self) -> ProbeResult:
        # The probe has its own deadline; beating while it runs keeps a timeout longer than
        # the relay's heartbeat timeout from looking like a frozen daemon.
        probe = asyncio.ensure_future(self._check.probe())
        try:
            while True:
                done, _ = await asyncio.wait({probe}, timeout=self.pulse)
                if done:
                    return probe.result()
                await self._beat()
        finally:
            if not probe.done():
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe

    def _note_skipped(self, skipped: int) -> None:
        if skipped:
            self.skipped += skipped
            log.warning(
                "decision loop fell behind: skipped %d tick(s)",
                skipped,
                extra={"event": "late", "skipped": skipped},
            )

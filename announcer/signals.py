"""Signals as data: the daemon's task reads them from a queue instead of acting in a handler.

`SignalQueue` installs `loop.add_signal_handler` handlers that only push the signal onto an
`asyncio.Queue`; one task of the daemon consumes it and decides (stop, hurry, reload). On exit
the default dispositions come back, so a signal after the daemon stopped listening acts as the
kernel's default would.

Must not: decide what a signal means, or do anything but enqueue in the handler (withdrawing
from a handler, the baseline's habit, runs at an arbitrary point of the daemon's work).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from types import TracebackType

__all__ = ["HANDLED", "SignalQueue"]

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SignalQueue:
    """`async with SignalQueue() as signals: sig = await signals.get()`.

    Must be entered on the main thread's running loop (where asyncio allows signal handlers).
    """

    def __init__(self, signals: Iterable[signal.Signals] = HANDLED) -> None:
        self._signals = tuple(signals)
        self._queue: asyncio.Queue[signal.Signals] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> SignalQueue:
        self._loop = asyncio.get_running_loop()
        for sig in self._signals:
            self._loop.add_signal_handler(sig, self._queue.put_nowait, sig)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None:
            for sig in self._signals:
                self._loop.remove_signal_handler(sig)
        self._loop = None

    async def get(self) -> signal.Signals:
        """The next signal received, in order of arrival."""
        return await self._queue.get()

    def pending(self) -> int:
        return self._queue.qsize()

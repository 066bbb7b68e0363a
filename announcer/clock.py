"""The daemon's time seam: monotonic `now()` and waiting for an event until a deadline.

`LoopClock` is the running event loop's clock; tests may pass another `Clock`. Must not: be
read by the pure core (`now` is handed to `step` by the daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

__all__ = ["Clock", "LoopClock"]


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

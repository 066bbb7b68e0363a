"""ExaBGP liveness: is the process behind the relay still answering?

A stopped or wedged ExaBGP keeps its TCP sessions open, so its routers keep routing the VIP
here until their hold timer expires (90 s with vendor defaults). At every tick of the daemon
(and at least every `INTERVAL` seconds), when no other command is in flight (a command in
flight has its own acknowledgement deadline), `version` is sent through the same
one-command channel; ExaBGP answers it at once (`exabgp 5.0.x`, then `done`). No answer
within `BOUND` seconds: the channel closes (see `announcer.speaker.channel`) and the core
hears `ExabgpSilent`, which kills ExaBGP; its sessions close at once and it is restarted as
after any exit. An `error` is an answer too. A wedged ExaBGP is thus killed within
INTERVAL + BOUND (1.3 s) of its last answer; a healthy one answers in about 2 ms, so the
bound leaves a loaded host plenty of room. Riding on the tick (every probe interval, 0.4 s
at the defaults), the check shares the tick's wake-up of the daemon and the heartbeat's of
the relay instead of waking them on a timer of its own.

Must not: decide what silence means (the core kills), or send while a command is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from announcer.clock import Clock
from announcer.core import events as ev
from announcer.speaker import ChannelClosed
from announcer.speakers import Speakers

__all__ = ["BOUND", "COMMAND", "INTERVAL", "watch_exabgp"]

INTERVAL: Final = 0.5
BOUND: Final = 0.8
COMMAND: Final = "version"


async def watch_exabgp(
    speakers: Speakers,
    *,
    put: Callable[[ev.Event], Awaitable[None]],
    clock: Clock,
    interval: float = INTERVAL,
    bound: float = BOUND,
    tick: asyncio.Event | None = None,
) -> None:
    """Check the current ExaBGP forever; `put` gets `ExabgpSilent` for each silence. With
    `tick` (set by the daemon's ticker), a check goes out whenever it is set, and at the
    latest `interval` after the last one."""
    wake = asyncio.Event() if tick is None else tick
    while True:
        await clock.wait(wake, clock.now() + interval)
        wake.clear()
        speaker = speakers.current
        channel = speaker.channel if speaker is not None else None
        if speaker is None or channel is None or channel.busy:
            continue
        pid = speaker.pid
        try:
            await channel.send(COMMAND, timeout=bound)
        except TimeoutError:
            if speakers.current is speaker and speaker.pid == pid:  # not a replaced process
                await put(ev.ExabgpSilent())
        except ChannelClosed:
            pass  # gone: its exit or disconnection is reported by the Speaker

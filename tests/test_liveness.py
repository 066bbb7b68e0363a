"""The liveness check's rhythm: a `version` at each tick the daemon gives it, and at the
latest `interval` after the last one when no tick comes; a silence is reported."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from announcer.clock import LoopClock
from announcer.core import events as ev
from announcer.liveness import watch_exabgp
from announcer.speakers import Speakers


@dataclass
class FakeChannel:
    """The seam: the one-command channel to ExaBGP, answering at once or never."""

    answers: bool = True
    busy: bool = False
    sent: list[float] = field(default_factory=list)

    async def send(self, command: str, *, timeout: float) -> None:  # noqa: ASYNC109 - its API
        self.sent.append(asyncio.get_running_loop().time())
        if not self.answers:
            await asyncio.sleep(timeout)
            raise TimeoutError


@dataclass
class FakeSpeaker:
    channel: FakeChannel
    pid: int = 4242


@dataclass
class FakeSpeakers:
    current: FakeSpeaker


async def _watch(
    channel: FakeChannel, *, ticks: int, gap: float, interval: float
) -> list[ev.Event]:
    heard: list[ev.Event] = []
    tick = asyncio.Event()

    async def put(event: ev.Event) -> None:
        heard.append(event)

    speakers = cast(Speakers, FakeSpeakers(FakeSpeaker(channel)))
    task = asyncio.create_task(
        watch_exabgp(speakers, put=put, clock=LoopClock(), interval=interval, bound=0.05, tick=tick)
    )
    for _ in range(ticks):
        await asyncio.sleep(gap)
        tick.set()
    await asyncio.sleep(gap)
    task.cancel()
    return heard


def test_a_check_goes_out_at_each_tick_sooner_than_its_interval() -> None:
    channel = FakeChannel()
    asyncio.run(_watch(channel, ticks=5, gap=0.05, interval=10.0))
    assert 4 <= len(channel.sent) <= 5  # one per tick; the 10 s timer never fired


def test_without_ticks_the_interval_bounds_the_gap() -> None:
    channel = FakeChannel()
    asyncio.run(_watch(channel, ticks=0, gap=0.35, interval=0.1))
    assert len(channel.sent) >= 2
    gaps = [b - a for a, b in zip(channel.sent, channel.sent[1:], strict=False)]
    assert all(g < 0.2 for g in gaps), gaps


def test_a_silent_exabgp_is_reported() -> None:
    heard = asyncio.run(_watch(FakeChannel(answers=False), ticks=1, gap=0.1, interval=10.0))
    assert heard == [ev.ExabgpSilent()]

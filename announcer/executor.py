"""Carrying out the core's effects: the only place they become I/O.

Each effect is done at once (a reply, a log line, a heartbeat, a kill) or as a task of the
daemon's group whose outcome comes back to the core as an event:
- `Send`: the command is rendered and sent on the current channel; `done` -> CommandDone,
  `error` -> CommandError, no ack in time or no channel -> CommandLost;
- `AddVip`/`RemoveVip`: the interface is changed -> VipObserved (or VipFailed);
- `StartProbe` -> ProbeDone, however long the probe takes (the core stops beating meanwhile);
- `CheckServed` -> ServedAnswered (`announcer.served.anyone_serves`, within its timeout);
- `StopExabgp`, `RestartExabgp` -> ExabgpExited once the old process is gone.

Must not: decide anything, or change the core's state except through events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Protocol

from announcer.checker import ApiserverCheck
from announcer.config.model import Config, VipNetwork
from announcer.core import events as ev
from announcer.core.effects import (
    Action,
    AddVip,
    Beat,
    CheckServed,
    Effect,
    Exit,
    KillExabgp,
    Log,
    RemoveVip,
    Reply,
    RestartExabgp,
    Send,
    StartProbe,
    StopExabgp,
)
from announcer.loopback import LoopbackError
from announcer.routes import render_announce, render_withdraw
from announcer.served import Served
from announcer.speaker import ChannelClosed
from announcer.speakers import Speakers

__all__ = ["Executor", "Shell", "VipTable"]

log = logging.getLogger(__name__)
core_log = logging.getLogger("announcer.core")  # the core's own lines, under its name


class VipTable(Protocol):
    """`announcer.loopback.Loopback`, or a fake in tests."""

    async def ensure_present(self, vip: VipNetwork) -> bool: ...

    async def ensure_absent(self, vip: VipNetwork) -> bool: ...

    async def missing(self, vips: Iterable[VipNetwork]) -> list[VipNetwork]: ...


class Shell(Protocol):
    """What the executor needs of the daemon."""

    speakers: Speakers
    vips: VipTable | None
    checker: ApiserverCheck
    pulse: float
    serves: Callable[..., Awaitable[Served]]  # `announcer.served.anyone_serves`, or a fake

    @property
    def config(self) -> Config: ...

    async def put(self, event: ev.Event) -> None: ...

    def spawn(self, job: Coroutine[None, None, None], name: str) -> object: ...

    def answer(self, client: int, ok: bool, text: str) -> None: ...

    def notify_watchdog(self) -> None: ...


class Executor:
    def __init__(self, shell: Shell, *, ack_timeout: float) -> None:
        self._shell = shell
        self._ack_timeout = ack_timeout

    async def carry_out(self, effect: Effect) -> None:
        shell = self._shell
        if isinstance(effect, Send):
            shell.spawn(self._send(effect), "send")
        elif isinstance(effect, AddVip):
            shell.spawn(self._add(effect.vip), "vip-add")
        elif isinstance(effect, RemoveVip):
            shell.spawn(self._remove(effect.vip), "vip-remove")
        elif isinstance(effect, StartProbe):
            shell.spawn(self._probe(), "probe")
        elif isinstance(effect, CheckServed):
            shell.spawn(self._served(effect), "served")
        elif isinstance(effect, Beat):
            await self._beat()
        elif isinstance(effect, Reply):
            shell.answer(effect.client, effect.ok, effect.text)
        elif isinstance(effect, Log):
            core_log.log(effect.level, "%s", effect.message, extra=dict(effect.fields))
        elif isinstance(effect, KillExabgp):
            if shell.speakers.current is not None:
                shell.speakers.current.kill()
        elif isinstance(effect, StopExabgp):
            shell.spawn(self._stop_exabgp(), "exabgp-stop")
        elif isinstance(effect, RestartExabgp):
            shell.spawn(self._restart_exabgp(), "exabgp-restart")
        elif isinstance(effect, Exit):
            log.info("withdrawn, VIPs off, exabgp stopped", extra={"event": "done"})

    async def _send(self, effect: Send) -> None:
        route = effect.route
        announce = effect.action is Action.ANNOUNCE
        command = render_announce(route) if announce else render_withdraw(route)
        speaker = self._shell.speakers.current
        channel = speaker.channel if speaker is not None else None
        event: ev.Event
        if channel is None:
            event = ev.CommandLost(effect.generation, "closed")
        else:
            try:
                done = await channel.send(command, timeout=self._ack_timeout)
            except ChannelClosed:
                event = ev.CommandLost(effect.generation, "closed")
            except TimeoutError:
                event = ev.CommandLost(effect.generation, "timeout")
            else:
                gen = effect.generation
                event = ev.CommandDone(gen) if done else ev.CommandError(gen)
        await self._shell.put(event)

    async def _add(self, vip: VipNetwork) -> None:
        vips = self._shell.vips
        assert vips is not None
        event: ev.Event
        try:
            await vips.ensure_present(vip)
        except LoopbackError as exc:
            event = ev.VipFailed(vip, str(exc))
        else:
            event = ev.VipObserved(vip, True)
        await self._shell.put(event)

    async def _remove(self, vip: VipNetwork) -> None:
        vips = self._shell.vips
        assert vips is not None
        try:
            await vips.ensure_absent(vip)
        except LoopbackError as exc:
            log.error("cannot remove VIP %s from the interface: %s", vip, exc)
            await asyncio.sleep(self._shell.pulse)  # the core asks again: not in a tight loop
            await self._shell.put(ev.VipObserved(vip, True))
            return
        await self._shell.put(ev.VipObserved(vip, False))

    async def _probe(self) -> None:
        result = await self._shell.checker.probe()
        await self._shell.put(ev.ProbeDone(result))

    async def _served(self, effect: CheckServed) -> None:
        serves = self._shell.serves
        answer = await serves(effect.addresses, effect.port, connect_timeout=effect.timeout)
        await self._shell.put(ev.ServedAnswered(answer.served, answer.reason))

    async def _beat(self) -> None:
        speaker = self._shell.speakers.current
        channel = speaker.channel if speaker is not None else None
        if channel is not None:
            with contextlib.suppress(ChannelClosed):
                await channel.heartbeat()
        self._shell.notify_watchdog()

    async def _stop_exabgp(self) -> None:
        if self._shell.speakers.current is not None:
            await self._shell.speakers.current.stop()
        await self._shell.put(ev.ExabgpExited())

    async def _restart_exabgp(self) -> None:
        shell = self._shell
        speakers = shell.speakers
        new = speakers.next or speakers.new(shell.config)
        speakers.next = None
        if speakers.current is not None:
            await speakers.current.stop()
        await shell.put(ev.ExabgpExited())  # the old process is gone for sure
        speakers.replace(new)
        await new.start()

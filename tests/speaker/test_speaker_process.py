"""The Speaker with real processes: a fake ExaBGP (tests/speaker/fake_exabgp.py) that runs the
real relay the way ExaBGP does, over the real socket, as the unprivileged user when root."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from collections.abc import Callable, Coroutine
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeVar

import pytest

from announcer.config import Config
from announcer.speaker import (
    Backoff,
    ChannelClosed,
    Connected,
    Disconnected,
    RenderError,
    RuntimePaths,
    SessionChanged,
    SessionState,
    Speaker,
    SpeakerEvent,
    peer,
)
from announcer.speaker.process import SUPERVISOR_TASK

DEADLINE = 10.0
PEER = IPv4Address("192.0.2.1")
FAST = Backoff(initial=0.01, maximum=0.05)
E = TypeVar("E", bound=SpeakerEvent)
MakeConfig = Callable[..., Config]


class Recorder:
    """The speaker's `on_event`: every event, in order, awaitable by kind."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[SpeakerEvent] = asyncio.Queue()
        self.seen: list[SpeakerEvent] = []

    def __call__(self, event: SpeakerEvent) -> None:
        self.queue.put_nowait(event)

    async def until(self, kind: type[E]) -> E:
        async with asyncio.timeout(DEADLINE):
            while True:
                event = await self.queue.get()
                self.seen.append(event)
                if isinstance(event, kind):
                    return event


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(test: Callable[[], Coroutine[None, None, None]]) -> None:
    asyncio.run(test())


def exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def proc_status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split()[1]
    raise AssertionError(f"no {field} for {pid}")


def test_serves_commands_reports_sessions_and_stops(fake_config: MakeConfig) -> None:
    config = fake_config()
    paths = RuntimePaths.of(config)

    async def test() -> None:
        events = Recorder()
        speaker = Speaker(config, on_event=events)
        await speaker.start()
        try:
            channel = (await events.until(Connected)).channel
            assert speaker.channel is channel and speaker.pid is not None
            assert await channel.send("neighbor 192.0.2.1 announce route x", timeout=5) is True
            assert await channel.send("bogus", timeout=5) is False
            assert await channel.send(f"fake session {PEER} up", timeout=5) is True
            changed = await events.until(SessionChanged)
            assert (changed.session.peer, changed.session.state) == (PEER, SessionState.UP)
            assert speaker.sessions[PEER].state is SessionState.UP
            assert speaker.status().connected and speaker.status().restarts == 0
            if os.geteuid() == 0:
                assert proc_status(speaker.pid, "Uid") == str(65534)  # nobody, never root
                check_modes(paths)
        finally:
            await speaker.stop()
        await events.until(Disconnected)
        assert speaker.pid is None and speaker.channel is None
        assert speaker.sessions[PEER].state is SessionState.DOWN
        assert speaker.sessions[PEER].reason == "exabgp is shutting down"
        assert not paths.socket.exists()
        with pytest.raises(ChannelClosed):
            await channel.send("x", timeout=5)

    run(test)


def check_modes(paths: RuntimePaths) -> None:
    nogroup = 65534
    for path, mode in [
        (paths.directory, 0o750),
        (paths.config, 0o640),  # holds the MD5 passwords
        (paths.relay, 0o644),
        (paths.socket, 0o660),
    ]:
        info = path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (mode, 0), path
        if path != paths.relay:
            assert info.st_gid == nogroup, path


def test_restarts_with_doubling_backoff_reset_by_a_stable_run(fake_config: MakeConfig) -> None:
    config, clock, delays = fake_config(), FakeClock(), []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    async def test() -> None:
        events = Recorder()
        backoff = Backoff(initial=0.5, maximum=30, stable=60)
        speaker = Speaker(config, on_event=events, backoff=backoff, clock=clock, sleep=sleep)
        await speaker.start()
        try:
            for stable in (False, False, True, False):
                channel = (await events.until(Connected)).channel
                clock.now += 100 if stable else 1
                with pytest.raises(ChannelClosed):
                    await channel.send("fake exit 3", timeout=5)
            await events.until(Connected)
            # short, short: 0.5 then 1; a stable run: at once; short again: 0.5
            assert delays == [0.5, 1.0, 0.5]
            assert speaker.restarts == 4
        finally:
            await speaker.stop()

    run(test)


def test_an_exabgp_that_keeps_failing_is_retried_up_to_the_maximum(
    fake_config: MakeConfig,
) -> None:
    config, delays = fake_config(settings={"fake.mode": "crash"}), []

    async def test() -> None:
        enough = asyncio.Event()

        async def sleep(delay: float) -> None:
            delays.append(delay)
            if len(delays) == 6:
                enough.set()
            await asyncio.sleep(0)

        backoff = Backoff(initial=0.5, maximum=4)
        speaker = Speaker(config, on_event=Recorder(), backoff=backoff, sleep=sleep)
        await speaker.start()
        try:
            await asyncio.wait_for(enough.wait(), DEADLINE)
        finally:
            await speaker.stop()
        assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]

    run(test)


def test_a_killed_exabgp_is_restarted_and_reconnects(fake_config: MakeConfig) -> None:
    async def test() -> None:
        events = Recorder()
        speaker = Speaker(fake_config(), on_event=events, backoff=FAST)
        await speaker.start()
        try:
            first = (await events.until(Connected)).channel
            killed = speaker.pid
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            await events.until(Disconnected)
            second = (await events.until(Connected)).channel
            assert second is not first and speaker.channel is second
            assert speaker.restarts == 1 and speaker.pid not in (None, killed)
            assert await second.send("neighbor 192.0.2.1 announce route x", timeout=5) is True
        finally:
            await speaker.stop()

    run(test)


def test_refuses_a_connection_from_anything_but_exabgps_relay(
    fake_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = fake_config()

    async def test() -> None:
        events = Recorder()
        speaker = Speaker(config, on_event=events)
        await speaker.start()
        try:
            channel = (await events.until(Connected)).channel
            reader, writer = await asyncio.open_unix_connection(RuntimePaths.of(config).socket)
            assert await asyncio.wait_for(reader.read(), DEADLINE) == b""  # closed on us
            writer.close()
            assert speaker.channel is channel
            assert await channel.send("still here", timeout=5) is True
        finally:
            await speaker.stop()
        assert [type(e) for e in events.seen] == [Connected]

    run(test)
    assert any("is not a child of exabgp" in message for message in caplog.messages)


def test_stop_kills_an_exabgp_that_ignores_sigterm(fake_config: MakeConfig) -> None:
    async def test() -> None:
        events = Recorder()
        config = fake_config(settings={"fake.mode": "stubborn"})
        speaker = Speaker(config, on_event=events, grace=0.2)
        await speaker.start()
        await events.until(Connected)
        pid = speaker.pid
        assert pid is not None
        await asyncio.wait_for(speaker.stop(), DEADLINE)
        await events.until(Disconnected)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    run(test)


def test_start_fails_on_a_configuration_that_does_not_render(
    fake_config: MakeConfig, shared_dir: Path
) -> None:
    config = fake_config()
    neighbor = replace(config.bgp.neighbors[0], password_file=shared_dir / "missing")
    broken = replace(config, bgp=replace(config.bgp, neighbors=(neighbor,)))

    async def test() -> None:
        speaker = Speaker(broken, on_event=Recorder())
        with pytest.raises(RenderError, match="does not exist"):
            await speaker.start()
        await speaker.stop()
        probe = socket.socket(socket.AF_UNIX)
        with pytest.raises(OSError):
            probe.connect(str(RuntimePaths.of(broken).socket))
        probe.close()

    run(test)


def test_a_cancelled_supervisor_leaves_no_exabgp_behind(fake_config: MakeConfig) -> None:
    async def test() -> None:
        events = Recorder()
        speaker = Speaker(fake_config(), on_event=events)
        await speaker.start()
        try:
            await events.until(Connected)
            pid = speaker.pid
            assert pid is not None
            (supervisor,) = [t for t in asyncio.all_tasks() if t.get_name() == SUPERVISOR_TASK]
            supervisor.cancel()
            await asyncio.wait({supervisor})
            assert not exists(pid)  # killed and reaped while the loop still runs
            assert speaker.pid is None
        finally:
            await speaker.stop()

    run(test)


def test_stop_leaves_no_task_of_the_speaker_behind(
    fake_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every task the speaker started (supervision, output drains, the stopper, relay
    connections, even one still open past the grace period) has ended when `stop()` returns.
    The peer check is the one seam replaced: a plain client passes for the relay and never
    hangs up."""
    monkeypatch.setattr(peer, "relay_refusal", lambda sock, pid: None)

    async def test() -> None:
        before = asyncio.all_tasks()
        events = Recorder()
        config = fake_config()
        speaker = Speaker(config, on_event=events, grace=0.2)
        await speaker.start()
        client = socket.socket(socket.AF_UNIX)
        try:
            await events.until(Connected)
            client.connect(str(RuntimePaths.of(config).socket))
            await events.until(Connected)  # the client's, replacing the relay's
            await speaker.stop()
            stray = asyncio.all_tasks() - before - {asyncio.current_task()}
            assert not stray, f"tasks of the speaker still pending after stop(): {stray}"
        finally:
            client.close()
            await speaker.stop()

    run(test)

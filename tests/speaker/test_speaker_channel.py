"""The channel over a real unix socketpair, with the test playing the relay's side."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from announcer.speaker.channel import MAX_LINE, Channel
from announcer.speaker.errors import ChannelClosed
from announcer.speaker.events import Event, SessionEvent, SessionState, Shutdown

SAMPLES = (Path(__file__).parent / "exabgp-events.jsonl").read_text().splitlines()
UP_EVENT = SAMPLES[1]
DEADLINE = 5.0


@dataclass
class Relay:
    """The far end of the channel's connection, as the relay would be."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: list[Event] = field(default_factory=list)
    got_event: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, event: Event) -> None:
        self.events.append(event)
        self.got_event.set()

    async def next_event(self) -> None:
        await asyncio.wait_for(self.got_event.wait(), DEADLINE)
        self.got_event.clear()

    async def say(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), DEADLINE)


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[Channel, Relay]]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    relay = Relay(*await asyncio.open_unix_connection(sock=theirs))
    channel = Channel(reader, writer, on_event=relay.record)
    task = asyncio.create_task(channel.run())
    try:
        yield channel, relay
    finally:
        relay.writer.close()
        await asyncio.wait_for(task, DEADLINE)


def run(test: Callable[[Channel, Relay], Awaitable[None]]) -> None:
    async def main() -> None:
        async with connected() as (channel, relay):
            await test(channel, relay)

    asyncio.run(main())


def test_done_is_true_and_the_command_reaches_the_relay() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("neighbor 192.0.2.1 announce x", timeout=5))
        assert await relay.line() == b"neighbor 192.0.2.1 announce x\n"
        await relay.say(b"done\n")
        assert await send is True

    run(test)


def test_error_is_false_and_the_channel_stays_usable() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("bogus", timeout=5))
        await relay.line()
        await relay.say(b"error\n")
        assert await send is False
        send = asyncio.create_task(channel.send("next", timeout=5))
        assert await relay.line() == b"next\n"
        await relay.say(b"done\n")
        assert await send is True

    run(test)


def test_an_ack_split_across_writes_still_counts() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        await relay.say(b"do")
        await asyncio.sleep(0)
        await relay.say(b"ne\n")
        assert await send is True

    run(test)


def test_no_ack_is_a_timeout_and_closes_the_channel() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        with pytest.raises(TimeoutError):
            await channel.send("x", timeout=0.05)
        assert channel.closed
        # A late ack can no longer be matched: the connection is closed, the relay sees EOF.
        assert await relay.line() == b"x\n"
        assert await relay.line() == b""
        with pytest.raises(ChannelClosed, match="no acknowledgement for 'x'"):
            await channel.send("y", timeout=5)
        with pytest.raises(ChannelClosed):
            await channel.heartbeat()

    run(test)


def test_a_cancelled_send_closes_the_channel() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        assert channel.closed

    run(test)


def test_garbage_is_skipped_and_the_ack_still_matches(caplog: pytest.LogCaptureFixture) -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        # Overlong lines, whether they come in one read or several, are dropped whole: the
        # `done` ending each must not be read as an ack either.
        longer = b"y" * (MAX_LINE + 10) + b"done\n"
        much_longer = b"z" * (3 * MAX_LINE) + b"done\n"
        await relay.say(b"garbage\n{not json\n" + longer + b'{"type": "weird"}\n\n\xff\n')
        await relay.say(much_longer)
        await relay.say(b"done\n")
        assert await send is True
        assert relay.events == []

    with caplog.at_level(logging.WARNING, logger="announcer.speaker.channel"):
        run(test)
    messages = [record.getMessage() for record in caplog.records]
    assert any("ignored a line from exabgp: 'garbage'" in m for m in messages)
    assert any("not JSON" in m for m in messages)
    assert sum(f"longer than {MAX_LINE} bytes" in m for m in messages) == 2
    assert any("unknown message type 'weird'" in m for m in messages)


def test_an_ack_with_no_command_in_flight_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        await relay.say(b"done\n")
        await relay.say(UP_EVENT.encode() + b"\n")  # processed after the stray ack
        await relay.next_event()
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        await relay.say(b"error\n")
        assert await send is False  # the stray `done` was not taken for this command

    with caplog.at_level(logging.WARNING, logger="announcer.speaker.channel"):
        run(test)
    assert "ignored 'done' from exabgp: no command in flight" in caplog.messages


def test_events_are_passed_on_while_a_command_is_in_flight() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        await relay.say(UP_EVENT.encode() + b"\ndone\n")
        assert await send is True
        peer, local = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
        assert relay.events == [SessionEvent(peer, local, SessionState.UP)]

    run(test)


@pytest.mark.parametrize(
    "shutdown", [b"shutdown\n", b'{ "type": "notification", "notification": "shutdown" }\n']
)
def test_shutdown_fails_the_command_in_flight_and_later_ones(shutdown: bytes) -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        await relay.say(shutdown)
        with pytest.raises(ChannelClosed, match="exabgp is shutting down"):
            await send
        with pytest.raises(ChannelClosed):
            await channel.send("y", timeout=5)

    run(test)


def test_json_shutdown_is_also_an_event() -> None:
    # The speaker marks every session down on it.
    async def test(channel: Channel, relay: Relay) -> None:
        await relay.say(b'{ "type": "notification", "notification": "shutdown" }\n')
        await relay.next_event()
        assert relay.events == [Shutdown()]
        assert channel.closed

    run(test)


def test_disconnect_fails_the_command_in_flight() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        relay.writer.close()
        with pytest.raises(ChannelClosed, match="the relay disconnected"):
            await send
        await asyncio.wait_for(channel.wait_closed(), DEADLINE)

    run(test)


def test_one_command_in_flight_at_a_time() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        first = asyncio.create_task(channel.send("first", timeout=5))
        second = asyncio.create_task(channel.send("second", timeout=5))
        assert await relay.line() == b"first\n"
        with pytest.raises(TimeoutError):  # "second" is held back until "first" is answered
            await asyncio.wait_for(relay.reader.readline(), 0.1)
        await relay.say(b"done\n")
        assert await relay.line() == b"second\n"
        await relay.say(b"error\n")
        assert (await first, await second) == (True, False)

    run(test)


def test_heartbeat_writes_a_hash_line() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        await channel.heartbeat()
        assert await relay.line() == b"#\n"

    run(test)


def test_a_command_is_one_line_of_ascii() -> None:
    async def test(channel: Channel, relay: Relay) -> None:
        with pytest.raises(ValueError, match="one line"):
            await channel.send("a\nb", timeout=5)
        with pytest.raises(UnicodeEncodeError):
            await channel.send("é", timeout=5)
        assert not channel.closed

    run(test)


def test_a_failing_listener_does_not_stop_the_channel(caplog: pytest.LogCaptureFixture) -> None:
    def listener(event: Event) -> None:
        raise RuntimeError("bug")

    async def main() -> None:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        relay = Relay(*await asyncio.open_unix_connection(sock=theirs))
        channel = Channel(reader, writer, on_event=listener)
        task = asyncio.create_task(channel.run())
        send = asyncio.create_task(channel.send("x", timeout=5))
        await relay.line()
        await relay.say(UP_EVENT.encode() + b"\ndone\n")
        assert await send is True
        relay.writer.close()
        await task

    asyncio.run(main())
    assert any("event listener failed" in m for m in caplog.messages)

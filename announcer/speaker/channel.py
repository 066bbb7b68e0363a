"""The line protocol over one relay connection: commands out, acknowledgements and events in.

ExaBGP answers each command with a bare `done` or `error` line that names no command, so only
one command may be in flight (a lock enforces it) and an ack belongs to the command in flight.
Once a command is abandoned (no ack in time, or the caller cancelled), a late ack could no
longer be told from the next command's: the channel closes instead, which makes the relay exit,
ExaBGP start a new one and the daemon replay its desired routes on the new connection.
JSON lines are events, passed on typed; the text answer of `version` ("exabgp 5.0.x", before
its `done`) is a liveness check's and is skipped quietly; anything else is logged and skipped,
never fatal.

Must not: decide what to send (routes.py and the core do), reconnect, or block on a
heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from announcer.speaker.errors import ChannelClosed, EventError
from announcer.speaker.events import Event, Shutdown, parse_event

log = logging.getLogger(__name__)

MAX_LINE: Final = 64 * 1024
HEARTBEAT: Final = b"#\n"
_ACKS: Final = {"done": True, "error": False}
_CHUNK: Final = 65536


class Channel:
    """Commands to ExaBGP and what it says back, over a connected relay stream.

    The owner runs `run()` as a task for as long as the connection lives; `send` and
    `heartbeat` may be called from any task meanwhile.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_event: Callable[[Event], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[bool] | None = None
        self._closed: str | None = None  # why no command can be sent any more
        self._finished = asyncio.Event()

    @property
    def busy(self) -> bool:
        """True while a command is in flight (or waiting for the one in flight)."""
        return self._lock.locked()

    @property
    def closed(self) -> bool:
        """True once no command can be sent any more (the connection may still drain)."""
        return self._closed is not None

    # A per-command deadline is this interface's contract with its callers.
    async def send(self, command: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        """Send one command; True on `done`, False on `error`.

        Raises ChannelClosed if the connection is gone or ExaBGP is shutting down, and
        TimeoutError if no acknowledgement arrives within `timeout` seconds (the channel is
        closed then: see the module docstring).
        """
        # Any control character, not only a line break: ExaBGP's reader may split on others.
        if not command.isprintable():
            raise ValueError(f"a command is one line without control characters: {command!r}")
        data = command.encode("ascii") + b"\n"
        async with self._lock:
            self._check_open()
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._pending = future
            try:
                async with asyncio.timeout(timeout):
                    self._writer.write(data)
                    await self._writer.drain()
                    return await future
            except ConnectionError as error:
                self.close(f"write failed: {error}")
                raise ChannelClosed(self._closed) from None
            except (TimeoutError, asyncio.CancelledError):
                self.close(f"no acknowledgement for {command!r} within {timeout:g} s")
                raise
            finally:
                self._pending = None

    async def heartbeat(self) -> None:
        """Queue one heartbeat line for the relay (it never reaches ExaBGP)."""
        self._check_open()
        # No drain: a relay that stops reading must miss heartbeats, not stall the caller.
        self._writer.write(HEARTBEAT)

    def close(self, reason: str = "closed by the daemon") -> None:
        """Refuse further commands and close the connection; `run()` then returns."""
        self._refuse(reason)
        self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until `run()` has seen the connection end."""
        await self._finished.wait()

    async def run(self) -> None:
        """Read acknowledgements and events until the connection ends."""
        try:
            await self._read_lines()
        except ConnectionError as error:
            log.warning("relay connection failed: %s", error)
        finally:
            self._refuse("the relay disconnected")
            self._writer.close()
            self._finished.set()

    async def _read_lines(self) -> None:
        buffer = b""
        overlong = False  # inside a line longer than MAX_LINE: drop it up to its newline
        while chunk := await self._reader.read(_CHUNK):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not overlong and len(line) > MAX_LINE:
                    log.warning("dropped a line from exabgp longer than %d bytes", MAX_LINE)
                elif not overlong:
                    self._dispatch(line)
                overlong = False
            if len(buffer) > MAX_LINE:
                if not overlong:
                    log.warning("dropped a line from exabgp longer than %d bytes", MAX_LINE)
                buffer, overlong = b"", True
        if buffer:
            log.warning("dropped a partial line from exabgp at disconnect: %r", buffer[:80])

    def _dispatch(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            return
        if line in _ACKS:
            self._acknowledge(line)
        elif line == "shutdown":
            self._refuse("exabgp is shutting down")
        elif line.startswith("{"):
            self._event(line)
        elif line.startswith("exabgp "):
            log.debug("exabgp answered: %s", line[:200])
        else:
            log.warning("ignored a line from exabgp: %r", line[:200])

    def _acknowledge(self, ack: str) -> None:
        if self._pending is None or self._pending.done():
            log.warning("ignored %r from exabgp: no command in flight", ack)
            return
        self._pending.set_result(_ACKS[ack])

    def _event(self, line: str) -> None:
        try:
            event = parse_event(line)
        except EventError as error:
            log.warning("ignored a message from exabgp (%s): %r", error, line[:200])
            return
        if event is None:
            log.debug("exabgp message of no interest: %s", line[:200])
            return
        if isinstance(event, Shutdown):
            self._refuse("exabgp is shutting down")
        try:
            self._on_event(event)
        except Exception:
            # A bug in a listener must not stop acks from reaching the command in flight.
            log.exception("event listener failed on %r", event)

    def _refuse(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
            log.debug("channel closed: %s", reason)
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(ChannelClosed(reason))

    def _check_open(self) -> None:
        if self._closed is not None:
            raise ChannelClosed(self._closed)

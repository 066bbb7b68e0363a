"""One client connection of the fake apiserver: reading requests off it and closing it.

Owns the byte buffer, whether the connection is idle (waiting for a request with nothing
received) and how it is closed. It must not decide what to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from announcer.lab.apiserver.http11 import BadRequestError, HeadBuffer, Request, parse_head
from announcer.lab.apiserver.routes import Identity

READ_CHUNK = 65536
# Go sends close_notify, lingers 500 ms for the peer (rstAvoidanceDelay), then closes.
CLOSE_LINGER = 0.5


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.task = asyncio.current_task()
        self.peer: Identity | None = None
        self.served = 0
        self._buffer = HeadBuffer()
        self._waiting = False

    @property
    def idle(self) -> bool:
        """Waiting for a request of which no byte has arrived (Go's StateIdle/StateNew)."""
        return self._waiting and not self._buffer.data

    async def next_request(self) -> Request | None:
        """The next request with its body consumed, or None once the peer has closed.

        Raises BadRequestError when the bytes are not a request.
        """
        while (head := self._buffer.take_head()) is None:
            chunk = await self._read()
            if not chunk:
                return None
            self._buffer.data += chunk
        request = parse_head(head)
        await self._skip_body(request.content_length)
        return request

    async def _read(self) -> bytes:
        self._waiting = True
        try:
            return await self.reader.read(READ_CHUNK)
        finally:
            self._waiting = False

    async def _skip_body(self, length: int) -> None:
        while len(self._buffer.data) < length:
            chunk = await self._read()
            if not chunk:
                raise BadRequestError("body shorter than Content-Length")
            self._buffer.data += chunk
        del self._buffer.data[:length]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_if_idle(self) -> None:
        """Stop waiting for a request; the serving task then closes the connection."""
        if self.idle and self.task is not None:
            self.task.cancel()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        """Send close_notify, give the peer a moment to close too, then abort."""
        self.writer.close()
        closed = asyncio.ensure_future(self.writer.wait_closed())
        done, _ = await asyncio.wait({closed}, timeout=CLOSE_LINGER)
        if not done:
            self.abort()
            # The transport reports connection_lost soon after an abort; wait for it so that
            # no transport outlives the loop. Not forever: a connection dropped during its TLS
            # handshake never reports it to these streams (its protocol was being swapped).
            done, _ = await asyncio.wait({closed}, timeout=CLOSE_LINGER)
        if not done:
            closed.cancel()
            return
        with contextlib.suppress(OSError, ssl.SSLError):
            closed.result()

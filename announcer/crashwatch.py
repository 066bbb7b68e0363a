"""Event-driven crash detection: an idle TLS connection held open to the local apiserver,
whose end says within milliseconds that the process may be gone.

When a process dies the kernel closes every socket it held, so this connection sees EOF or a
reset at once. The watch then reconnects at once. Accepted: the server had merely closed an
idle connection (Go's read-header and idle timeouts, a graceful shutdown's idle close), and
nothing is reported. Not accepted (refused, reset, a TLS failure, no handshake within
`connect_timeout`): a `Trigger` goes to `on_trigger`, and the core should probe at once
rather than at the next tick. A refused connect is unambiguous, so the probe confirms it in
about a millisecond.

While the apiserver cannot be reached the watch retries every `retry` seconds and stays
silent: it reports again only after it has been connected once more. After a loss the watch
reconnects at once, however young the lost connection was, so a crash right after a connect
(an apiserver crash-looping) is noticed at once too. Only when the connection made at once
after a short one (under `retry`) is short as well does it pause until `retry` after that one
began: a server that closes every connection at once (one that insists on a client
certificate, say) costs two handshakes per `retry`, not a busy loop.

It never sends a request, so it costs the apiserver one idle connection (plus a handshake
each time the server times it out) and the daemon no wake-up at all while nothing happens.

Use: build it with the probe's `ssl.SSLContext` (`ApiserverCheck.ssl_context`), run `run()`
as a task for the life of the daemon, and restart it when that context changes.

Must not: probe, decide health, or retry faster than `retry` while the apiserver is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from announcer.probe import describe_failure

__all__ = ["CrashWatch", "Trigger"]

log = logging.getLogger(__name__)

_READ_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Trigger:
    """The watched connection ended and the apiserver did not take a new one: `reason` as
    the probe words it ("refused", "reset", "timeout", "tls: ..."), `at` on the loop's
    clock, `lost_at` when the connection ended."""

    reason: str
    at: float
    lost_at: float


class CrashWatch:
    """Holds one idle connection to `url` (https://host:port) and reports its loss."""

    def __init__(
        self,
        *,
        url: str,
        server_name: str,
        ssl_context: ssl.SSLContext,
        on_trigger: Callable[[Trigger], None],
        retry: float = 1.0,
        connect_timeout: float = 0.35,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"url: {url!r} has no host")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._server_name = server_name
        self._context = ssl_context
        self._on_trigger = on_trigger
        self._retry = retry
        self._connect_timeout = connect_timeout
        self.connected = False
        self.connects = 0

    async def run(self) -> None:
        """Watch until cancelled."""
        loop = asyncio.get_running_loop()
        armed = False  # a trigger is due only for a connection that was there
        hasty = False  # this connection was made at once after a short one
        lost_at = pause = 0.0
        while True:
            if pause > 0:
                await asyncio.sleep(pause)
            outcome = await self._connect()
            if isinstance(outcome, str):
                if armed:
                    self._report(outcome, lost_at)
                armed, pause, hasty = False, self._retry, False
                continue
            armed, began = True, loop.time()
            await self._hold(*outcome)
            lost_at = loop.time()
            short = lost_at - began < self._retry
            pause = began + self._retry - lost_at if short and hasty else 0.0
            hasty = short and not hasty

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
        try:
            async with asyncio.timeout(self._connect_timeout):
                streams = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._context,
                    server_hostname=self._server_name,
                    ssl_handshake_timeout=self._connect_timeout,
                )
        except (OSError, TimeoutError) as exc:
            return describe_failure(exc)
        self.connects += 1
        return streams

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Until the server ends the connection (it never speaks first on HTTP/1.1)."""
        self.connected = True
        try:
            with contextlib.suppress(OSError):
                while await reader.read(_READ_CHUNK):
                    pass
        finally:
            self.connected = False
            writer.transport.abort()  # nothing to say goodbye to

    def _report(self, reason: str, lost_at: float) -> None:
        trigger = Trigger(reason=reason, at=asyncio.get_running_loop().time(), lost_at=lost_at)
        log.info(
            "apiserver connection lost and not taken again: %s",
            reason,
            extra={"event": "crash-trigger", "reason": reason},
        )
        self._on_trigger(trigger)

"""The fake kube-apiserver: listeners, TLS, connections and run-time state.

Owns the listening sockets (closed and reopened as the state asks, jammed in `connect-hang`
so that a TCP connect never completes), the TLS handshake (held back in `tls-stall`),
answering requests through `routes` (held in `hang`, delayed in `slow`), the graceful
shutdown sequence of the real apiserver and its death (`crash`: what the kernel does to a
killed process's sockets). It must not parse the control protocol nor the command line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence

from announcer.lab.apiserver import routes
from announcer.lab.apiserver.connection import Connection
from announcer.lab.apiserver.credentials import peer_identity
from announcer.lab.apiserver.http11 import BAD_REQUEST, BadRequestError, Request, Response, render
from announcer.lab.apiserver.listen import ListenAddress, bind, jammed
from announcer.lab.apiserver.routes import Hold, Identity, View
from announcer.lab.apiserver.states import Options, ShutdownPhase, State

log = logging.getLogger("announcer.lab.apiserver")

HANDSHAKE_TIMEOUT = 10.0
# Go closes connections that never sent a request this long after Shutdown.
NEW_CONNECTION_GRACE = 5.0
DEFAULT_OPTIONS = Options()
_COUNTED_PATHS = frozenset({"/readyz", "/livez", "/healthz", "/version", "/lab/hold"})


class FakeApiserver:
    """A kube-apiserver look-alike serving health, version and lab endpoints over TLS."""

    def __init__(
        self,
        *,
        node: str,
        tls: ssl.SSLContext,
        listen: Sequence[ListenAddress],
        state: State = State.READY,
        options: Options = DEFAULT_OPTIONS,
        tokens: Mapping[str, Identity] | None = None,
    ) -> None:
        self.node = node
        self._tls = tls
        self._listen = list(listen)
        self._tokens = dict(tokens or {})
        self._initial = (state, options)
        self._state = State.STOPPED
        self._options = DEFAULT_OPTIONS
        self._phase = ShutdownPhase.NONE
        self._servers: list[asyncio.Server] = []
        self._jam: list[socket.socket] = []  # connect-hang's full listeners and their fillers
        self._http_closing = False
        self._connections: set[Connection] = set()
        self._tracked = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._sequence: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._by_path: collections.Counter[str] = collections.Counter()
        self._by_status: collections.Counter[str] = collections.Counter()

    async def __aenter__(self) -> FakeApiserver:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def state(self) -> State:
        return self._state

    @property
    def listening(self) -> bool:
        return bool(self._servers)

    @property
    def addresses(self) -> list[ListenAddress]:
        """Where the listeners are (ports chosen by the kernel filled in)."""
        return list(self._listen)

    async def start(self) -> None:
        """Enter the initial state (opening the listeners unless it is `stopped`)."""
        await self.set_state(*self._initial)

    async def close(self) -> None:
        """Stop at once: listeners and every connection closed."""
        self._cancel_sequence()
        await self._halt()

    async def set_state(self, state: State, options: Options = DEFAULT_OPTIONS) -> None:
        """Switch to `state`; a second `shutdown` stops at once, as a second SIGTERM does."""
        if state is State.SHUTDOWN and self._state is State.SHUTDOWN:
            state, options = State.STOPPED, DEFAULT_OPTIONS
        self._cancel_sequence()
        self._enter(state, options)
        if state in (State.STOPPED, State.CRASH):
            await self._halt()
        elif state is State.CONNECT_HANG:
            await self._halt()
            self._jam_listeners()
        else:
            await self._open()
        if state is State.SHUTDOWN:
            self._phase = ShutdownPhase.INITIATED
            self._sequence = asyncio.create_task(self._shutdown(options))

    def snapshot(self) -> dict[str, object]:
        """What the control `get` reports."""
        return {
            "node": self.node,
            "state": self._state.value,
            "options": {
                "delay": self._options.delay,
                "retry_after": self._options.retry_after,
                "ms": self._options.ms,
            },
            "phase": self._phase.name.lower().replace("_", "-"),
            "listening": self.listening,
            "addresses": [str(a) for a in self._listen],
            "connections": len(self._connections),
            # Requests being answered, probes excepted (what a retry-after shutdown drains).
            "in_flight": self._tracked,
            "requests": {
                "total": sum(self._by_status.values()),
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
            },
        }

    def _enter(self, state: State, options: Options) -> None:
        if state is not self._state or options != self._options:
            log.info(
                "%s: state %s -> %s%s", self.node, self._state, state, _describe(state, options)
            )
        self._state, self._options = state, options
        self._phase = ShutdownPhase.NONE
        self._poke()

    def _poke(self) -> None:
        """Wake everything waiting for a state, counter or connection change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _cancel_sequence(self) -> None:
        if self._sequence is not None and self._sequence is not asyncio.current_task():
            self._sequence.cancel()
        self._sequence = None

    def _jam_listeners(self) -> None:
        """Listeners that take no connection, and refuse none either."""
        self._unjam()
        for address in self._listen:
            self._jam.extend(jammed(address))
        log.info("%s: listeners jammed on %s", self.node, ", ".join(map(str, self._listen)))

    def _unjam(self) -> None:
        for sock in self._jam:
            sock.close()
        self._jam.clear()

    async def _open(self) -> None:
        self._unjam()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._http_closing = False
        if self._servers:
            return
        for index, address in enumerate(self._listen):
            sock = bind(address)
            self._listen[index] = ListenAddress(address.host, sock.getsockname()[1])
            self._servers.append(await asyncio.start_server(self._on_connect, sock=sock))
        log.info("%s: listening on %s", self.node, ", ".join(map(str, self._listen)))

    def _close_listeners(self) -> None:
        if not self._servers:
            return
        for server in self._servers:
            server.close()
        self._servers.clear()
        log.info("%s: listeners closed", self.node)

    async def _halt(self) -> None:
        # Aborted, not closed: no close_notify, no linger, as when the process is killed.
        self._close_listeners()
        self._unjam()
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        tasks = [c.task for c in connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _shutdown(self, options: Options) -> None:
        """The real sequence after SIGTERM (readyz already failing when this starts)."""
        await asyncio.sleep(options.delay)
        self._phase = ShutdownPhase.NOT_ACCEPTING
        log.info("%s: shutdown delay elapsed, not accepting new requests", self.node)
        if options.retry_after:
            # The listeners stay open (answering 429) until in-flight requests drain.
            await self._wait_for(lambda: self._tracked == 0)
        self._stop_http()
        await self._wait_for(lambda: not self._connections)
        self._sequence = None
        self._enter(State.STOPPED, DEFAULT_OPTIONS)

    def _stop_http(self) -> None:
        """Go's http.Server.Shutdown: stop listening, close idle connections."""
        self._close_listeners()
        self._http_closing = True
        loop = asyncio.get_running_loop()
        for connection in self._connections:
            if connection.served and connection.idle:
                connection.close_if_idle()
            else:
                timer = loop.call_later(NEW_CONNECTION_GRACE, connection.close_if_idle)
                self._timers.append(timer)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Keep the ClientHello in the kernel until this server wants to handshake.
        if isinstance(writer.transport, asyncio.ReadTransport):
            writer.transport.pause_reading()
        connection = Connection(reader, writer)
        self._connections.add(connection)
        try:
            await self._wait_for(lambda: self._state is not State.TLS_STALL)
            await writer.start_tls(self._tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            connection.peer = credentials_of(writer)
            await self._serve(connection)
        except (OSError, TimeoutError) as exc:
            log.debug("%s: connection dropped: %r", self.node, exc)
            connection.abort()
        finally:
            # Also reached when cancelled: by close_if_idle, or after an abort by _halt.
            await connection.close()
            self._connections.discard(connection)
            self._poke()

    async def _serve(self, connection: Connection) -> None:
        while not (connection.served and self._http_closing):
            try:
                request = await connection.next_request()
            except BadRequestError:
                await connection.send(render(BAD_REQUEST))
                return
            if request is None:
                return
            response = await self._answer(request, connection)
            if self._http_closing or not request.keep_alive or request.header("transfer-encoding"):
                response = response.closing()
            await connection.send(render(response, head_only=request.method == "HEAD"))
            connection.served += 1
            self._count(request, response)
            if response.close:
                return

    async def _answer(self, request: Request, connection: Connection) -> Response:
        tracked = not routes.is_probe(request.path)
        self._tracked += int(tracked)
        try:
            await self._wait_for(lambda: self._state is not State.HANG)
            if self._state is State.SLOW:
                await asyncio.sleep(self._options.ms / 1000)
            view = View(self.node, self._state, self._phase, self._options.retry_after)
            identity = routes.authenticate(request, peer=connection.peer, tokens=self._tokens)
            answer = routes.respond(request, view=view, identity=identity)
            if isinstance(answer, Hold):
                await asyncio.sleep(answer.seconds)
                answer = routes.held(view)
        finally:
            self._tracked -= int(tracked)
            self._poke()
        return answer.with_headers(("Audit-Id", str(uuid.uuid4())), ("X-Lab-Node", self.node))

    def _count(self, request: Request, response: Response) -> None:
        self._by_path[request.path if request.path in _COUNTED_PATHS else "other"] += 1
        self._by_status[str(response.status)] += 1


def credentials_of(writer: asyncio.StreamWriter) -> Identity | None:
    ssl_object = writer.get_extra_info("ssl_object")
    return peer_identity(ssl_object if isinstance(ssl_object, ssl.SSLObject) else None)


def _describe(state: State, options: Options) -> str:
    if state is State.SHUTDOWN:
        return f" (delay {options.delay:g}s, retry_after {str(options.retry_after).lower()})"
    if state is State.SLOW:
        return f" ({options.ms:g} ms)"
    return ""

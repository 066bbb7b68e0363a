"""`BfdService`: runs BFD sessions over UDP on the running asyncio loop.

The I/O shell around the pure parts: datagrams from the listening sockets are checked (TTL for
single-hop), decoded, matched to a session and fed to it; one task calls `tick` on every
session when its deadline comes; whatever the sessions emit is sent from the session's own
socket, and every state change goes to the `on_change` callback. Time is the loop's
monotonic clock. A bad packet is counted in `drops` by reason and otherwise ignored; a failed
send is counted in `send_errors`. Nothing a peer sends can raise out of here.

Usage, from a coroutine that owns the service's lifetime:

    async with BfdService(on_change=handler) as bfd:
        bfd.add(SessionKey(peer, local, multihop=False), Profile(...))
        ...                    # bfd.status() for status and metrics

Leaving the block sends AdminDown on every session (RFC 5882: not a failure) and closes
every socket.

Must not: decide what a session going down means for BGP (the daemon's), log, or block.
"""

from __future__ import annotations

import asyncio
import contextlib
import random as random_module
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from announcer.bfd import sockets
from announcer.bfd.packet import Diag, Discard, Discarded, State, decode, encode
from announcer.bfd.session import Output, Profile, Session, StateChange
from announcer.bfd.table import IPAddress, SessionKey, SessionTable

ChangeHandler = Callable[[SessionKey, StateChange], None]
_IDLE = 3600.0
_BURST = 64  # datagrams read per wake-up before letting other callbacks run


@dataclass(frozen=True, kw_only=True)
class SessionStatus:
    """One session as `announcer status` and the metrics show it; intervals in seconds."""

    key: SessionKey
    state: State
    diag: Diag
    remote_state: State
    remote_diag: Diag
    discriminator: int
    remote_discriminator: int
    transmit_interval: float
    detection_time: float
    state_changes: int
    last_down: Diag | None  # why it last went Down (None: never)


class BfdService:
    """The BFD sessions of this node and their sockets."""

    def __init__(
        self, *, on_change: ChangeHandler | None = None, random: Callable[[], float] | None = None
    ) -> None:
        self._on_change = on_change
        self._random = random or random_module.SystemRandom().random
        self._table = SessionTable(random=self._random)
        self._senders: dict[SessionKey, socket.socket] = {}
        self._listeners: dict[tuple[IPAddress, bool], socket.socket] = {}
        self._state_changes: Counter[SessionKey] = Counter()
        self._last_down: dict[SessionKey, Diag] = {}
        self.drops: Counter[Discard] = Counter()
        self.send_errors = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BfdService:
        self._task = asyncio.create_task(self._run(), name="bfd")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key, _session in list(self._table):
            self.remove(key)
        for sock in self._listeners.values():
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()

    def add(self, key: SessionKey, profile: Profile) -> None:
        """Start a session (Down, sending at the slow rate until the peer answers); raises
        `BfdSocketError` if its sockets cannot be opened, ValueError if it exists."""
        if key in self._table:
            raise ValueError(f"BFD session {key} exists already")
        self._listen(key.local, multihop=key.multihop)
        self._senders[key] = sockets.sending_socket(key.local, random=self._random)
        self._table.add(key, profile, self._now())
        self._wake.set()

    def remove(self, key: SessionKey) -> None:
        """Send AdminDown once, then forget the session and close its socket."""
        session = self._table.get(key)
        self._emit(key, session.admin_down(self._now()))
        self._table.remove(key)
        self._senders.pop(key).close()

    def set_profile(self, key: SessionKey, profile: Profile) -> None:
        self._emit(key, self._table.get(key).set_profile(profile, self._now()))
        self._wake.set()

    def status(self) -> list[SessionStatus]:
        return [self._status(key, session) for key, session in self._table]

    def _status(self, key: SessionKey, session: Session) -> SessionStatus:
        return SessionStatus(
            key=key,
            state=session.state,
            diag=session.diag,
            remote_state=session.remote_state,
            remote_diag=session.remote_diag,
            discriminator=session.discriminator,
            remote_discriminator=session.remote_discriminator,
            transmit_interval=session.transmit_interval,
            detection_time=session.detection_time,
            state_changes=self._state_changes[key],
            last_down=self._last_down.get(key),
        )

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _listen(self, local: IPAddress, *, multihop: bool) -> None:
        if (local, multihop) in self._listeners:
            return
        sock = sockets.listening_socket(local, multihop=multihop)
        self._listeners[local, multihop] = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, sock, multihop)

    async def _run(self) -> None:
        while True:
            now = self._now()
            for key, session in list(self._table):
                if session.deadline <= now:
                    self._emit(key, session.tick(now))
            deadline = min((s.deadline for _, s in self._table), default=now + _IDLE)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()

    def _readable(self, sock: socket.socket, multihop: bool) -> None:
        for _ in range(_BURST):
            datagram = sockets.receive(sock)
            if datagram is None:
                return
            self._datagram(datagram, multihop=multihop)

    def _datagram(self, datagram: sockets.Datagram, *, multihop: bool) -> None:
        try:
            if not multihop and datagram.ttl != sockets.TTL:
                raise Discarded(Discard.TTL)
            packet = decode(datagram.payload)
            key, session = self._table.match(packet, source=datagram.source, multihop=multihop)
            output = session.receive(packet, self._now())
        except Discarded as discarded:
            self.drops[discarded.reason] += 1
            return
        self._emit(key, output)
        self._wake.set()  # the session's deadline moved

    def _emit(self, key: SessionKey, output: Output) -> None:
        sender = self._senders[key]
        destination = (str(key.peer), sockets.port(multihop=key.multihop))
        for packet in output.packets:
            try:
                sender.sendto(encode(packet), destination)
            except OSError:  # unreachable, filtered, buffer full: the peer's timers decide
                self.send_errors += 1
        for change in output.changes:
            self._state_changes[key] += 1
            if change.new is State.DOWN:
                self._last_down[key] = change.diag
            if self._on_change is not None:
                self._on_change(key, change)

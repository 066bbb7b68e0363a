"""The status socket's server: serves `announcer.status_protocol` on a Unix socket.

This module owns the socket file's life, its permissions, and the limits that keep one bad
or slow client from hurting the daemon or locking an operator out: `MAX_REQUEST`, a read
deadline, `MAX_CLIENTS` connections at a time and `MAX_PER_UID` per connecting uid (from
`SO_PEERCRED`), with idle connections evicted for newcomers (`announcer.smallserver`), so
an operator's `drain` gets in while other users hold connections open. Every connection's
task, admitted, evicted or told busy, has ended when `close()` returns. It must not decide
anything: drain and undrain are the daemon's callbacks, the snapshot is the daemon's. The
formats are in `announcer.status_protocol`, the client and the human rendering in
`announcer.status_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeAlias

from announcer.config.pathcheck import path_problem
from announcer.smallserver import Clients, Ticket
from announcer.status_protocol import (
    MAX_REQUEST,
    ControlError,
    DrainRequest,
    JSONObject,
    ProtocolError,
    Request,
    StatusRequest,
    StatusSnapshot,
    encode_line,
    error_response,
    parse_request,
)

__all__ = [
    "MAX_CLIENTS",
    "MAX_PER_UID",
    "READ_TIMEOUT",
    "DrainHandler",
    "StatusServer",
    "StatusServerError",
    "UndrainHandler",
]

READ_TIMEOUT: Final = 2.0
MAX_CLIENTS: Final = 32
MAX_PER_UID: Final = 8
DrainHandler: TypeAlias = Callable[[bool], Awaitable[str]]
UndrainHandler: TypeAlias = Callable[[], Awaitable[str]]

log = logging.getLogger(__name__)


class StatusServerError(OSError):
    """The status socket cannot be set up (path taken, unknown group, permissions)."""


class StatusServer:
    """Serves the status socket at `path` until `close()`.

    `start()` refuses a directory another user could redirect (`announcer.config.pathcheck`),
    creates the parent directory (0755), replaces a stale socket left by a dead
    daemon (but refuses a live one or a file that is not a socket), and gives the socket
    `mode` and `group`. Until the chmod the socket has the umask's mode, which is never wider
    than root-only for writing, and connecting needs write permission.
    """

    def __init__(
        self,
        path: Path,
        *,
        mode: int,
        group: str | None,
        snapshot: Callable[[], StatusSnapshot],
        on_drain: DrainHandler,
        on_undrain: UndrainHandler,
        read_timeout: float = READ_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        max_per_uid: int = MAX_PER_UID,
    ) -> None:
        self._path = path
        self._mode = mode
        self._group = group
        self._snapshot = snapshot
        self._on_drain = on_drain
        self._on_undrain = on_undrain
        self._read_timeout = read_timeout
        self._clients = Clients(capacity=max_clients, per_peer=min(max_per_uid, max_clients))
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._refused: set[asyncio.Task[object]] = set()  # told busy: not in `_clients`

    @property
    def path(self) -> Path:
        return self._path

    @property
    def connections(self) -> int:
        """Connections being served right now."""
        return len(self._clients)

    async def start(self) -> None:
        """Raises `StatusServerError` when the socket cannot be set up."""
        try:
            gid = _group_id(self._group)
            _prepare_path(self._path)
            self._server = await asyncio.start_unix_server(
                self._serve, path=self._path, limit=MAX_REQUEST + 1
            )
            self._inode = self._path.stat().st_ino
            os.chown(self._path, -1, gid, follow_symlinks=False)
            self._path.chmod(self._mode)
        except OSError as exc:
            await self.close()
            if isinstance(exc, StatusServerError):
                raise
            raise StatusServerError(f"status socket {self._path}: {exc}") from exc

    async def close(self) -> None:
        """Stop listening, end open connections, remove the socket file if it is ours."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._clients.close()
        refused = self._refused - {asyncio.current_task()}
        for task in refused:
            task.cancel()
        await asyncio.gather(*refused, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        with contextlib.suppress(OSError):
            if self._inode is not None and self._path.stat().st_ino == self._inode:
                self._path.unlink()
        self._inode = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ticket = self._clients.admit(_peer_uid(writer))
        if ticket is None:
            self._own_refused()
        try:
            if ticket is None:
                response = error_response("busy: too many status connections")
            else:
                response = await self._respond(reader, ticket)
            writer.write(encode_line(response))
            await asyncio.wait_for(writer.drain(), self._read_timeout)
        except (OSError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to tell it
        finally:
            if ticket is not None:
                ticket.release()
            writer.close()

    def _own_refused(self) -> None:
        """A connection told busy is awaited by `close()` like an admitted one."""
        task = asyncio.current_task()
        if task is not None:
            self._refused.add(task)
            task.add_done_callback(self._refused.discard)

    async def _respond(self, reader: asyncio.StreamReader, ticket: Ticket) -> JSONObject:
        try:
            line = await asyncio.wait_for(_read_line(reader), self._read_timeout)
            ticket.reading_done()
            request = parse_request(line)
        except TimeoutError:
            return error_response(f"no complete request within {self._read_timeout:g} s")
        except ProtocolError as exc:
            return error_response(str(exc))
        return await self._dispatch(request)

    async def _dispatch(self, request: Request) -> JSONObject:
        try:
            if isinstance(request, StatusRequest):
                return {"ok": True, "status": self._snapshot().to_json()}
            if isinstance(request, DrainRequest):
                return {"ok": True, "message": await self._on_drain(request.wait)}
            return {"ok": True, "message": await self._on_undrain()}
        except ControlError as exc:
            return error_response(str(exc))
        except Exception:
            log.exception("status request %s failed", type(request).__name__)
            return error_response("internal error; see the daemon's log")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ProtocolError("empty request") from None
        return exc.partial  # the client closed its side without a newline: take the line
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"line longer than {MAX_REQUEST} bytes") from None


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The connecting process's uid (SO_PEERCRED), or None if the kernel will not say."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    _, uid, _ = struct.unpack("3i", creds)
    return int(uid)


def _group_id(group: str | None) -> int:
    if group is None:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StatusServerError(f"status socket group {group!r} does not exist") from None


def _prepare_path(path: Path) -> None:
    _refuse_unsafe(path.parent)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _refuse_unsafe(path.parent)  # someone may have raced the mkdir in a sticky directory
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise StatusServerError(f"{path} exists and is not a socket; not replacing it")
    if _is_listening(path):
        raise StatusServerError(f"another process is serving {path}")
    path.unlink()


def _refuse_unsafe(directory: Path) -> None:
    problem = path_problem("status.socket", directory)
    if problem is not None:
        raise StatusServerError(f"{problem}; refusing to create the socket there")


def _is_listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        result = probe.connect_ex(str(path))
    # EAGAIN: a live server whose backlog is full
    return result in (0, errno.EAGAIN)

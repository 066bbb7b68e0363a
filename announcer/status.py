"""The status socket's protocol, shared by the daemon's server and the CLI's client.

One connection carries one exchange: the client writes one JSON object on one line, the
server answers with one JSON object on one line and closes. Requests:

    {"op": "status"}                  -> {"ok": true, "status": {...snapshot...}}
    {"op": "drain", "wait": false}    -> {"ok": true, "message": "..."}
    {"op": "undrain"}                 -> {"ok": true, "message": "..."}

and any failure is `{"ok": false, "error": "..."}`. A request over `MAX_REQUEST` bytes, one
that is not JSON, or names an unknown op gets an error answer; the server never crashes on a
request. Times in a snapshot are Unix epoch seconds (wall clock, for humans).

This module owns the request and snapshot formats and the server (`StatusServer`): the
socket file's life, its permissions, and the limits that keep one bad or slow client from
hurting the daemon (`MAX_REQUEST`, a read deadline, `MAX_CLIENTS` connections at a time). It
must not decide anything: drain and undrain are the daemon's callbacks, the snapshot is the
daemon's. The client and the human rendering are in `announcer.status_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, TypeAlias

from announcer.health import Health
from announcer.lifecycle import Lifecycle

__all__ = [
    "MAX_CLIENTS",
    "MAX_REQUEST",
    "READ_TIMEOUT",
    "ControlError",
    "DrainHandler",
    "DrainRequest",
    "ExabgpStatus",
    "JSONObject",
    "JSONValue",
    "NeighborStatus",
    "ProbeStatus",
    "ProtocolError",
    "Request",
    "StatusRequest",
    "StatusServer",
    "StatusServerError",
    "StatusSnapshot",
    "TransitionRecord",
    "UndrainHandler",
    "UndrainRequest",
    "VipStatus",
    "decode_line",
    "encode_line",
    "error_response",
    "parse_request",
]

MAX_REQUEST: Final = 4096
READ_TIMEOUT: Final = 2.0
MAX_CLIENTS: Final = 16
JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = dict[str, JSONValue]
DrainHandler: TypeAlias = Callable[[bool], Awaitable[str]]
UndrainHandler: TypeAlias = Callable[[], Awaitable[str]]

log = logging.getLogger(__name__)


class ProtocolError(ValueError):
    """A line that is not a valid request or response; the message is safe to send back."""


class ControlError(Exception):
    """Raised by a drain/undrain handler: the request failed, the message says why."""


class StatusServerError(OSError):
    """The status socket cannot be set up (path taken, unknown group, permissions)."""


@dataclass(frozen=True, slots=True)
class StatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class DrainRequest:
    wait: bool = False


@dataclass(frozen=True, slots=True)
class UndrainRequest:
    pass


Request: TypeAlias = StatusRequest | DrainRequest | UndrainRequest


@dataclass(frozen=True, slots=True)
class VipStatus:
    prefix: str
    announced: bool
    reason: str  # why it is (not) announced, for humans: "health down", "drained", ...


@dataclass(frozen=True, slots=True)
class NeighborStatus:
    address: str
    state: str  # ExaBGP's word: "up", "down", "connected", or "unknown" before any event
    since: float | None


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    ok: bool
    status: int | None
    reason: str
    latency_ms: float
    at: float


@dataclass(frozen=True, slots=True)
class ExabgpStatus:
    pid: int | None
    restarts: int


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    at: float
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusSnapshot:
    """Everything `announcer status` shows; `transitions` are the recent ones, newest last."""

    announced: bool
    health: Health
    health_since: float | None
    drained: bool
    lifecycle: Lifecycle
    vips: tuple[VipStatus, ...]
    neighbors: tuple[NeighborStatus, ...]
    last_probe: ProbeStatus | None
    exabgp: ExabgpStatus
    transitions: tuple[TransitionRecord, ...]
    config_error: str | None

    def to_json(self) -> JSONObject:
        result: JSONObject = json.loads(json.dumps(asdict(self), default=_enum_value))
        return result


def parse_request(line: bytes) -> Request:
    """One request line from a client; raises `ProtocolError` with a message for the client."""
    data = decode_line(line, limit=MAX_REQUEST)
    op = data.get("op")
    if op == "status":
        return StatusRequest()
    if op == "drain":
        wait = data.get("wait", False)
        if not isinstance(wait, bool):
            raise ProtocolError("drain: 'wait' must be true or false")
        return DrainRequest(wait=wait)
    if op == "undrain":
        return UndrainRequest()
    raise ProtocolError(f"unknown op {_short(op)} (expected status, drain or undrain)")


def decode_line(line: bytes, *, limit: int) -> JSONObject:
    """One JSON object from one line of at most `limit` bytes (not counting the newline)."""
    line = line.removesuffix(b"\n")
    if len(line) > limit:
        raise ProtocolError(f"line longer than {limit} bytes")
    try:
        data: JSONValue = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("not a JSON line") from None
    if not isinstance(data, dict):
        raise ProtocolError("not a JSON object")
    return data


def encode_line(message: Mapping[str, JSONValue]) -> bytes:
    # ensure_ascii: the line stays one line whatever a reason string holds
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def error_response(message: str) -> JSONObject:
    return {"ok": False, "error": message}


def _enum_value(value: object) -> object:
    if isinstance(value, Health | Lifecycle):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else "?"
    return text if len(text) <= 40 else text[:37] + "..."


class StatusServer:
    """Serves the status socket at `path` until `close()`.

    `start()` creates the parent directory (0755), replaces a stale socket left by a dead
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
    ) -> None:
        self._path = path
        self._mode = mode
        self._group = group
        self._snapshot = snapshot
        self._on_drain = on_drain
        self._on_undrain = on_undrain
        self._read_timeout = read_timeout
        self._max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._clients: set[asyncio.Task[object]] = set()

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
            os.chown(self._path, -1, gid)
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
        for task in list(self._clients):
            task.cancel()
        if server is not None:
            await server.wait_closed()
        with contextlib.suppress(OSError):
            if self._inode is not None and self._path.stat().st_ino == self._inode:
                self._path.unlink()
        self._inode = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task: asyncio.Task[object] | None = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            if len(self._clients) > self._max_clients:
                response = error_response("busy: too many status connections")
            else:
                response = await self._respond(reader)
            writer.write(encode_line(response))
            await asyncio.wait_for(writer.drain(), self._read_timeout)
        except (OSError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to tell it
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> JSONObject:
        try:
            line = await asyncio.wait_for(_read_line(reader), self._read_timeout)
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


def _group_id(group: str | None) -> int:
    if group is None:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StatusServerError(f"status socket group {group!r} does not exist") from None


def _prepare_path(path: Path) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise StatusServerError(f"{path} exists and is not a socket; not replacing it")
    if _is_listening(path):
        raise StatusServerError(f"another process is serving {path}")
    path.unlink()


def _is_listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        result = probe.connect_ex(str(path))
    # EAGAIN: a live server whose backlog is full
    return result in (0, errno.EAGAIN)

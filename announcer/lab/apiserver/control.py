"""The fake apiserver's control socket: one JSON object per line in, one per line out.

Requests: `{"op": "get"}`, or `{"op": "set", "state": "shutdown", "delay": 3.0,
"retry_after": false, "ms": 0}` (options default to 0 / false). Replies carry `"ok": true`
and the server's snapshot (node, state, options, phase, listening, addresses, connections,
in_flight, request counts), or `"ok": false` and an `error` naming the offending key. `phase` is
`initiated` or `not-accepting` during a shutdown, else `none`. Setting `shutdown` while
shutting down stops at once (a second SIGTERM).

Owns the wire format, its validation and a blocking client. It must not realise states.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from dataclasses import dataclass
from pathlib import Path

from announcer.lab.apiserver.server import FakeApiserver
from announcer.lab.apiserver.states import Options, State

MAX_LINE = 1 << 16
_SET_KEYS = frozenset({"op", "state", "delay", "retry_after", "ms"})


class ControlError(Exception):
    """A control request was refused, or the control socket did not answer properly."""


@dataclass(frozen=True)
class SetState:
    state: State
    options: Options


def parse_request(message: object) -> SetState | None:
    """The command in a decoded request line: a SetState, or None for `get`."""
    if not isinstance(message, dict):
        raise ControlError(f"request: {message!r} is not a JSON object")
    op = message.get("op")
    if op == "get":
        if set(message) != {"op"}:
            raise ControlError(f"get: unknown keys {sorted(set(message) - {'op'})}")
        return None
    if op != "set":
        raise ControlError(f"op: {op!r} is not one of get, set")
    unknown = set(message) - _SET_KEYS
    if unknown:
        raise ControlError(f"set: unknown keys {sorted(unknown)}")
    raw_state = message.get("state")
    try:
        state = State(str(raw_state))
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise ControlError(f"state: {raw_state!r} is not one of {names}") from None
    retry_after = message.get("retry_after", False)
    if not isinstance(retry_after, bool):
        raise ControlError(f"retry_after: {retry_after!r} is not true or false")
    options = Options(
        delay=_seconds(message, "delay"), retry_after=retry_after, ms=_seconds(message, "ms")
    )
    return SetState(state, options)


def _seconds(message: dict[str, object], key: str) -> float:
    value = message.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{key}: {value!r} is not a number")
    if not math.isfinite(value) or value < 0:
        raise ControlError(f"{key}: {value!r} is not a finite number >= 0")
    return float(value)


async def handle_line(apiserver: FakeApiserver, line: bytes) -> dict[str, object]:
    """The reply to one request line."""
    try:
        command = parse_request(json.loads(line))
        if command is not None:
            await apiserver.set_state(command.state, command.options)
    except (ControlError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}
    except OSError as exc:
        # Reopening a listener can fail (address taken meanwhile).
        return {"ok": False, "error": f"state: cannot listen: {exc}"}
    return {"ok": True, **apiserver.snapshot()}


async def serve_control(path: Path, apiserver: FakeApiserver) -> asyncio.Server:
    """Listen on the unix socket `path` (replacing a stale one) for control requests."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await handle_line(apiserver, line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (OSError, ValueError):
            pass  # a client that went away or sent an over-long line
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.to_thread(path.unlink, missing_ok=True)
    return await asyncio.start_unix_server(on_connect, path=path, limit=MAX_LINE)


def request(
    sock_path: Path | str, message: dict[str, object], *, timeout: float = 10.0
) -> dict[str, object]:
    """Send one request to the control socket and return the reply.

    Raises ControlError when the server refuses the request or answers garbage, OSError when
    the socket cannot be reached.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline(MAX_LINE)
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"control socket {sock_path}: bad reply {line!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"control socket {sock_path}: bad reply {line!r}")
    if reply.get("ok") is not True:
        raise ControlError(f"control socket {sock_path}: {reply.get('error', reply)}")
    return reply

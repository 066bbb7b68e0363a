"""The status socket's protocol: requests, answers and the snapshot, as data and as lines.

One connection carries one exchange: the client writes one JSON object on one line, the
server answers with one JSON object on one line and closes. Requests:

    {"op": "status"}                  -> {"ok": true, "status": {...snapshot...}}
    {"op": "drain", "wait": false}    -> {"ok": true, "message": "..."}
    {"op": "undrain"}                 -> {"ok": true, "message": "..."}

and any failure is `{"ok": false, "error": "..."}`. A request over `MAX_REQUEST` bytes, one
that is not JSON, repeats a key, or names an unknown op is a `ProtocolError`. Times in a
snapshot are Unix epoch seconds (wall clock, for humans).

This module owns the formats only; it is pure (no sockets, no asyncio, no files) so that the
CLI can speak the protocol without importing the daemon's server. It must not do I/O or
decide anything. The server is `announcer.status`; the client is `announcer.status_client`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Final, TypeAlias

from announcer.health import Health
from announcer.lifecycle import Lifecycle

__all__ = [
    "MAX_REQUEST",
    "BfdStatus",
    "ControlError",
    "DrainRequest",
    "ExabgpStatus",
    "JSONObject",
    "JSONValue",
    "NeighborStatus",
    "ProbeStatus",
    "ProtocolError",
    "Request",
    "StatusRequest",
    "StatusSnapshot",
    "TransitionRecord",
    "UndrainRequest",
    "VipStatus",
    "decode_line",
    "encode_line",
    "error_response",
    "parse_request",
]

MAX_REQUEST: Final = 4096
JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = dict[str, JSONValue]


class ProtocolError(ValueError):
    """A line that is not a valid request or response; the message is safe to send back."""


class ControlError(Exception):
    """Raised by a drain/undrain handler: the request failed, the message says why."""


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
    link: str = "connected"  # "connected", "disconnected", "killing" or "dead"
    killed_for: str | None = None  # why it was last killed, until it answers again


@dataclass(frozen=True, slots=True)
class BfdStatus:
    """The BFD session with one neighbor: state "up", "down", "init" or "admin_down"; `diag`
    why it last changed; `last_down` why it last went Down (None: never)."""

    neighbor: str
    state: str
    diag: str
    since: float | None
    changes: int
    last_down: str | None


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
    bfd: tuple[BfdStatus, ...] = ()

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
        data: JSONValue = json.loads(line, object_pairs_hook=_unique_keys)
    except ProtocolError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("not a JSON line") from None
    if not isinstance(data, dict):
        raise ProtocolError("not a JSON object")
    return data


def _unique_keys(pairs: list[tuple[str, JSONValue]]) -> JSONObject:
    """A JSON object whose keys are unique: `{"op":"status","op":"drain"}` is no request."""
    result: JSONObject = {}
    for key, value in pairs:
        if key in result:
            raise ProtocolError(f"key {_short(key)} given twice")
        result[key] = value
    return result


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

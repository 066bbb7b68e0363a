"""ExaBGP's JSON events, parsed into the few typed changes the daemon acts on.

ExaBGP (`encoder json`, `neighbor-changes`) writes one JSON object per line:
`{"type": "state", "neighbor": {"address": {"local", "peer"}, "state": ..., "reason": ...}}`
for sessions, and `{"type": "notification", "notification": "shutdown"}` before it stops.

Must not: do I/O, keep state or trust the input: every malformed line is an `EventError`, so
the caller can log and skip it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from announcer.speaker.errors import EventError

IPAddress = IPv4Address | IPv6Address

# ExaBGP message types which `neighbor-changes` can bring and which carry nothing we act on.
_IGNORED_TYPES = frozenset({"notification", "fsm", "signal", "negotiated", "open", "keepalive"})


class SessionState(enum.Enum):
    """A BGP session as ExaBGP reports it: TCP up, established, or gone."""

    CONNECTED = "connected"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class SessionEvent:
    """A neighbor's session changed state; `reason` is ExaBGP's text for a `down`."""

    peer: IPAddress
    local: IPAddress | None
    state: SessionState
    reason: str = ""


@dataclass(frozen=True)
class Shutdown:
    """ExaBGP is stopping: no command sent from now on will be acted on."""


Event = SessionEvent | Shutdown


def parse_event(line: str) -> Event | None:
    """One line of ExaBGP output as an event; None for a well-formed message we do not use."""
    try:
        message: object = json.loads(line)
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError
        raise EventError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise EventError("not a JSON object")
    kind = message.get("type")
    if kind == "state":
        return _session_event(message.get("neighbor"))
    if kind == "notification" and message.get("notification") == "shutdown":
        return Shutdown()
    if kind in _IGNORED_TYPES:
        return None
    raise EventError(f"unknown message type {str(kind)[:40]!r}")


def _session_event(neighbor: object) -> SessionEvent:
    if not isinstance(neighbor, dict):
        raise EventError("state message without a neighbor object")
    address = neighbor.get("address")
    if not isinstance(address, dict):
        raise EventError("state message without neighbor.address")
    peer = _address(address.get("peer"))
    if peer is None:
        raise EventError("state message without a valid neighbor.address.peer")
    try:
        state = SessionState(neighbor.get("state"))
    except ValueError:
        raise EventError(f"unknown session state {str(neighbor.get('state'))[:40]!r}") from None
    reason = neighbor.get("reason", "")
    return SessionEvent(
        peer=peer,
        local=_address(address.get("local")),
        state=state,
        reason=reason if isinstance(reason, str) else str(reason),
    )


def _address(value: object) -> IPAddress | None:
    # ExaBGP writes "None" for a local address it has not discovered yet.
    if not isinstance(value, str):
        return None
    try:
        return ip_address(value)
    except ValueError:
        return None

"""The status socket's client side: one request to the daemon, and the snapshot for humans.

It owns connecting with a deadline, reading the one answer line, turning every way of not
getting an answer into `DaemonUnreachable` (the CLI's exit code 1), decoding a snapshot back
into `announcer.status_protocol.StatusSnapshot`, and `render_status`, the one-screen text of
`announcer status`. It must not decide the exit code (the CLI does, from `announced`) nor
speak any protocol but `announcer.status_protocol`'s.
"""

from __future__ import annotations

import enum
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TypeVar

from announcer.health import Health
from announcer.lifecycle import Lifecycle
from announcer.status_protocol import (
    BfdStatus,
    ExabgpStatus,
    JSONObject,
    JSONValue,
    NeighborStatus,
    ProbeStatus,
    ProtocolError,
    StatusSnapshot,
    TransitionRecord,
    VipStatus,
    decode_line,
    encode_line,
)

__all__ = [
    "DaemonUnreachable",
    "ProtocolError",
    "ask",
    "query",
    "render_status",
    "snapshot_from_json",
]

MAX_RESPONSE: Final = 1 << 20
# How long `ask` keeps retrying while the daemon answers that it is busy, and its pauses.
BUSY_RETRY_FOR: Final = 2.0
_FIRST_PAUSE: Final = 0.05
_LONGEST_PAUSE: Final = 0.5
T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class DaemonUnreachable(Exception):
    """No answer from the daemon: no socket, refused, no permission, timeout, garbage."""


def query(path: Path, request: Mapping[str, JSONValue], *, timeout: float) -> JSONObject:
    """Send one request and return the daemon's answer (which may say `"ok": false`)."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(encode_line(request))
            line = _read_line(sock, deadline)
    except TimeoutError:
        raise DaemonUnreachable(f"no answer on {path} within {timeout:g} s") from None
    except PermissionError:
        raise DaemonUnreachable(f"not allowed to connect to {path} (run as root?)") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DaemonUnreachable(f"cannot reach the daemon at {path}: {reason}") from None
    try:
        return decode_line(line, limit=MAX_RESPONSE)
    except ProtocolError as exc:
        raise DaemonUnreachable(f"bad answer on {path}: {exc}") from None


def ask(
    path: Path,
    request: Mapping[str, JSONValue],
    *,
    timeout: float,
    busy_for: float = BUSY_RETRY_FOR,
) -> JSONObject:
    """`query`, sent again with growing pauses while the daemon answers `busy` (it serves a
    bounded number of connections at once), for up to `busy_for` seconds; then the last
    answer, busy or not."""
    give_up = time.monotonic() + busy_for
    pause = _FIRST_PAUSE
    while True:
        answer = query(path, request, timeout=timeout)
        if not is_busy(answer) or time.monotonic() + pause > give_up:
            return answer
        time.sleep(pause)  # a backoff between attempts, not a wait for an event
        pause = min(2 * pause, _LONGEST_PAUSE)


def is_busy(answer: Mapping[str, JSONValue]) -> bool:
    """Whether the daemon refused the request only because it is serving too many."""
    error = answer.get("error")
    return answer.get("ok") is not True and isinstance(error, str) and error.startswith("busy")


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > MAX_RESPONSE:
            break
    return b"".join(chunks).split(b"\n", 1)[0]


def snapshot_from_json(data: Mapping[str, JSONValue]) -> StatusSnapshot:
    """Read a snapshot the daemon sent; raises `ProtocolError` naming the bad field."""
    probe = data.get("last_probe")
    return StatusSnapshot(
        announced=_field(data, "announced", bool),
        health=_enum(Health, data, "health"),
        health_since=_optional_number(data, "health_since"),
        drained=_field(data, "drained", bool),
        lifecycle=_enum(Lifecycle, data, "lifecycle"),
        vips=tuple(_vip(item) for item in _objects(data, "vips")),
        neighbors=tuple(_neighbor(item) for item in _objects(data, "neighbors")),
        last_probe=None if probe is None else _probe(_object(probe, "last_probe")),
        exabgp=_exabgp(_object(data.get("exabgp"), "exabgp")),
        transitions=tuple(_transition(item) for item in _objects(data, "transitions")),
        config_error=_text(data, "config_error"),
        bfd=tuple(_bfd(item) for item in _objects(data, "bfd")) if "bfd" in data else (),
    )


def render_status(snapshot: Mapping[str, JSONValue], *, now: float | None = None) -> str:
    """`announcer status`: verdict first, then why, on one screen."""
    status = snapshot_from_json(snapshot)
    at = time.time() if now is None else now
    lines = [_verdict(status), ""]
    lines.append(f"health:     {status.health.value}{_since(status.health_since, at)}")
    lines.append(f"last probe: {_probe_line(status.last_probe, at)}")
    lines.append(f"drain:      {'drained' if status.drained else 'not drained'}")
    lines.append(f"lifecycle:  {status.lifecycle.value}")
    lines.append(f"exabgp:     {_exabgp_line(status.exabgp)}")
    if status.config_error is not None:
        lines.append(f"config:     last reload failed: {status.config_error}")
    lines.extend(_section("vips", [_vip_line(vip) for vip in status.vips]))
    width = max((len(str(n.address)) for n in status.neighbors), default=0)
    neighbors = [
        f"{n.address!s:<{width}}  {n.state}{_since(n.since, at)}" for n in status.neighbors
    ]
    lines.extend(_section("neighbors", neighbors))
    if status.bfd:  # neighbors with BFD enabled only
        lines.extend(_section("bfd", [_bfd_line(row, at) for row in status.bfd]))
    changes = [_transition_line(t, at) for t in status.transitions]
    lines.extend(_section("recent transitions (newest last)", changes))
    return "\n".join(lines) + "\n"


def _verdict(status: StatusSnapshot) -> str:
    count = sum(vip.announced for vip in status.vips)
    if status.announced:
        return f"ANNOUNCING: {count} of {len(status.vips)} VIP(s) announced"
    if status.drained:
        why = "drained"
    elif status.lifecycle is not Lifecycle.RUNNING:
        why = status.lifecycle.value
    elif status.exabgp.link != "connected" and status.health is Health.UP:
        why = f"exabgp {status.exabgp.link}"
        if status.exabgp.killed_for is not None:
            why += f": {status.exabgp.killed_for}"
    else:
        why = f"health {status.health.value}"
    return f"NOT ANNOUNCING ({why})"


def _exabgp_line(exabgp: ExabgpStatus) -> str:
    pid = "not running" if exabgp.pid is None else f"pid {exabgp.pid}"
    line = f"{pid}, {exabgp.restarts} restart(s)"
    if exabgp.link != "connected":
        line += f", {exabgp.link}"
    if exabgp.killed_for is not None:
        line += f" (killed: {exabgp.killed_for})"
    return line


def _bfd_line(row: BfdStatus, now: float) -> str:
    line = f"{row.neighbor}  {row.state} (diag {row.diag}){_since(row.since, now)}"
    line += f", {row.changes} change(s)"
    if row.last_down is not None:
        line += f", last down: {row.last_down}"
    return line


def _section(title: str, rows: list[str]) -> list[str]:
    return ["", f"{title}:", *(f"  {row}" for row in rows)] if rows else ["", f"{title}: none"]


def _vip_line(vip: VipStatus) -> str:
    state = "announced" if vip.announced else "not announced"
    return f"{vip.prefix:<20} {state}" + (f" ({vip.reason})" if vip.reason else "")


def _probe_line(probe: ProbeStatus | None, now: float) -> str:
    if probe is None:
        return "none yet"
    # The reason already names the status of a failure ("http 500: etcd").
    result = "ok" if probe.ok else f"failed: {probe.reason}"
    when = f"{_clock(probe.at)} ({_ago(now - probe.at)})"
    return f"{result}, {probe.latency_ms:.1f} ms, at {when}"


def _transition_line(record: TransitionRecord, now: float) -> str:
    when = f"{_clock(record.at)} ({_ago(now - record.at)})"
    return f"{when}  {record.old} -> {record.new}: {record.reason}"


def _since(at: float | None, now: float) -> str:
    return "" if at is None else f" since {_clock(at)} ({_ago(now - at)})"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _ago(seconds: float) -> str:
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h ago"
    if hours:
        return f"{hours}h{minutes}m ago"
    if minutes:
        return f"{minutes}m{secs}s ago"
    return f"{secs}s ago"


def _field(data: Mapping[str, JSONValue], key: str, kind: type[T]) -> T:
    value = data.get(key)
    # bool is an int in Python; a count that says `true` is garbage
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProtocolError(f"snapshot field {key!r}: expected {kind.__name__}")
    return value


def _number(data: Mapping[str, JSONValue], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"snapshot field {key!r}: expected a number")
    return float(value)


def _optional_number(data: Mapping[str, JSONValue], key: str) -> float | None:
    return None if data.get(key) is None else _number(data, key)


def _text(data: Mapping[str, JSONValue], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError(f"snapshot field {key!r}: expected a string or null")


def _optional_int(data: Mapping[str, JSONValue], key: str) -> int | None:
    return None if data.get(key) is None else _field(data, key, int)


def _enum(kind: type[E], data: Mapping[str, JSONValue], key: str) -> E:
    value = _field(data, key, str)
    try:
        return kind(value)
    except ValueError:
        raise ProtocolError(f"snapshot field {key!r}: unknown value {value[:40]!r}") from None


def _object(value: JSONValue | None, key: str) -> Mapping[str, JSONValue]:
    if not isinstance(value, dict):
        raise ProtocolError(f"snapshot field {key!r}: expected an object")
    return value


def _objects(data: Mapping[str, JSONValue], key: str) -> list[Mapping[str, JSONValue]]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ProtocolError(f"snapshot field {key!r}: expected a list")
    return [_object(item, key) for item in value]


def _vip(data: Mapping[str, JSONValue]) -> VipStatus:
    return VipStatus(
        prefix=_field(data, "prefix", str),
        announced=_field(data, "announced", bool),
        reason=_field(data, "reason", str),
    )


def _neighbor(data: Mapping[str, JSONValue]) -> NeighborStatus:
    return NeighborStatus(
        address=_field(data, "address", str),
        state=_field(data, "state", str),
        since=_optional_number(data, "since"),
    )


def _probe(data: Mapping[str, JSONValue]) -> ProbeStatus:
    return ProbeStatus(
        ok=_field(data, "ok", bool),
        status=_optional_int(data, "status"),
        reason=_field(data, "reason", str),
        latency_ms=_number(data, "latency_ms"),
        at=_number(data, "at"),
    )


def _exabgp(data: Mapping[str, JSONValue]) -> ExabgpStatus:
    return ExabgpStatus(
        pid=_optional_int(data, "pid"),
        restarts=_field(data, "restarts", int),
        link=_field(data, "link", str) if "link" in data else "connected",
        killed_for=_text(data, "killed_for"),
    )


def _bfd(data: Mapping[str, JSONValue]) -> BfdStatus:
    return BfdStatus(
        neighbor=_field(data, "neighbor", str),
        state=_field(data, "state", str),
        diag=_field(data, "diag", str),
        since=_optional_number(data, "since"),
        changes=_field(data, "changes", int),
        last_down=_text(data, "last_down"),
    )


def _transition(data: Mapping[str, JSONValue]) -> TransitionRecord:
    return TransitionRecord(
        at=_number(data, "at"),
        old=_field(data, "old", str),
        new=_field(data, "new", str),
        reason=_field(data, "reason", str),
    )

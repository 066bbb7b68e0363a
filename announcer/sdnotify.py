"""systemd's notify protocol (sd_notify(3)) without libsystemd.

It owns writing one datagram to `$NOTIFY_SOCKET` (a path, or an abstract name written with a
leading `@`) and reading the watchdog interval the service manager asked for. Outside systemd
both are harmless no-ops. It must not decide when to notify: the daemon sends `READY=1` once
it is deciding, `WATCHDOG=1` from its decision loop (so a frozen loop is restarted) and
`STOPPING=1` on the way out.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "watchdog_interval"]


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send `message` (e.g. "READY=1", "WATCHDOG=1", "STATUS=...") to the service manager.

    Returns True when the datagram was sent, False when there is no `$NOTIFY_SOCKET` or the
    send failed: losing a notification must never stop the daemon.
    """
    env = os.environ if environ is None else environ
    address = _socket_address(env.get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval(*, environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd set for this process, in seconds, or None.

    None when `$WATCHDOG_USEC` is unset or invalid, or when `$WATCHDOG_PID` names another
    process (the variables were inherited, not meant for us). Ping at half this interval.
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 1_000_000


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        # abstract namespace: the leading '@' stands for a NUL byte
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None

"""Who is on the other end of the relay's socket: only a child of our ExaBGP is the relay.

The socket's directory already keeps out every user but ExaBGP's (and root); the kernel's
peer credentials (SO_PEERCRED) then tell the relay from any other process of that user, so
nothing else can take over the command stream.

Must not: read or write the connection.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Final

_PEERCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


def relay_refusal(sock: socket.socket, exabgp_pid: int | None) -> str | None:
    """Why the peer of `sock` is not the relay of ExaBGP `exabgp_pid`, or None if it is."""
    pid, uid, _ = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    if exabgp_pid is None or parent_pid(pid) != exabgp_pid:
        return f"pid {pid} (uid {uid}) is not a child of exabgp (pid {exabgp_pid})"
    return None


def parent_pid(pid: int) -> int | None:
    """The parent of process `pid`, None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None

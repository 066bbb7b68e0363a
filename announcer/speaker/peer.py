"""Who is on the other end of the relay's socket: only our ExaBGP's child, and only while no
other process can reach the pipes between them.

What is guaranteed, and against whom: the command stream (daemon <-> relay <-> ExaBGP) can be
read or written only by the daemon, ExaBGP, the relay, and root.
- Other users: the socket's directory (0750 root:<ExaBGP's group>) and mode keep out every
  user but ExaBGP's.
- Other processes of ExaBGP's user: the kernel's peer credentials (SO_PEERCRED) tell the
  relay (a child of the ExaBGP we started) from any other process connecting; and the relay
  and ExaBGP make themselves non-dumpable (PR_SET_DUMPABLE 0: `relay`, `nodump`), which keeps
  other processes of that user out of their /proc/<pid>/fd, where the API pipes between them
  could otherwise be opened to inject commands or forge ExaBGP's messages. A relay
  connection is refused unless both ends are non-dumpable when it connects; /proc shows a
  non-dumpable process's fd directory as root's.
Not covered: root, a process that ptraces (it needs CAP_SYS_PTRACE), and a process of
ExaBGP's user that opens the relay's pipes in the instant between the relay's exec and its
prctl (the interpreter's start-up, a few milliseconds at each relay start).

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
    for role, process in (("the relay", pid), ("exabgp", exabgp_pid)):
        if dumpable(process, uid):
            return (
                f"{role} (pid {process}, uid {uid}) is dumpable: any process of uid {uid} "
                "could open its pipes"
            )
    return None


def dumpable(pid: int, uid: int) -> bool:
    """Whether process `pid`, running as `uid`, lets processes of `uid` into /proc/<pid>/fd.

    The kernel shows a non-dumpable process's /proc files as root's. Root's own processes
    are open to root anyway: False for uid 0."""
    if uid == 0:
        return False
    try:
        return Path(f"/proc/{pid}/fd").stat().st_uid == uid
    except OSError:
        return False  # gone: nothing to reach


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

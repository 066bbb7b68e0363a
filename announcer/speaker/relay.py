"""The relay: ExaBGP's only `process`, a copy of this file run by the system Python.

    python3 -I -S relay.py SOCKET HEARTBEAT_TIMEOUT

It connects to the daemon's unix socket and copies lines both ways: daemon -> ExaBGP (our
stdout) and ExaBGP -> daemon (our stdin). Lines from the daemon that start with `#` are
heartbeats: consumed here, never forwarded. It is the dead-man switch: when no heartbeat has
arrived for HEARTBEAT_TIMEOUT seconds it SIGKILLs its parent, ExaBGP, whose sessions then drop
and take the routes with them; it does the same when the daemon closes the connection (after
a lost acknowledgement nobody knows what ExaBGP holds, and no one could withdraw it any more).
It exits when either side closes, and dies with ExaBGP (PR_SET_PDEATHSIG), so no copy of it
outlives the process that started it.

Its first act is PR_SET_DUMPABLE 0: its stdin and stdout are ExaBGP's API pipes, and while it
is dumpable any other process of ExaBGP's user could open them through /proc/<pid>/fd and
inject commands or forge ExaBGP's messages. Non-dumpable, only root can. (The window is the
interpreter's start-up, before this runs; the daemon refuses a relay still dumpable.)

Must not: import anything outside the standard library (it runs as ExaBGP's unprivileged user
with `-I`, away from the daemon's virtualenv), interpret the commands it copies, or retry a
connection (ExaBGP respawns it a few times and then gives up, which is what withdraws the
routes once the daemon is gone).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
CHUNK = 65536


class Watchdog:
    """The time of the last heartbeat, and whether either copy has finished."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.last = time.monotonic()
        self.finished = threading.Event()
        self.daemon_gone = False  # the daemon closed the connection

    def beat(self) -> None:
        self.last = time.monotonic()

    def expired(self) -> bool:
        """Wait until the heartbeat deadline passes (True) or a copy finishes (False)."""
        while True:
            remaining = self.last + self.timeout - time.monotonic()
            if remaining <= 0:
                return True
            if self.finished.wait(remaining):
                return False


def forbid_dumps() -> None:
    """Keep other processes of our user out of /proc/<us>/fd; exit if the kernel will not."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.stderr.write(f"relay: prctl(PR_SET_DUMPABLE): {os.strerror(ctypes.get_errno())}\n")
        os._exit(1)


def die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        sys.stderr.write(f"relay: prctl failed: {os.strerror(ctypes.get_errno())}\n")
    # ExaBGP may have died between our fork and the prctl: then nobody would ever kill us.
    if os.getppid() != parent:
        os._exit(1)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def to_exabgp(sock: socket.socket, watchdog: Watchdog) -> None:
    """Daemon -> ExaBGP, line by line, swallowing heartbeats."""
    try:
        for line in sock.makefile("rb"):
            if line.startswith(b"#"):
                watchdog.beat()
            elif line.endswith(b"\n"):
                write_all(sys.stdout.fileno(), line)
    except OSError as error:
        sys.stderr.write(f"relay: to exabgp: {error}\n")
    finally:
        watchdog.daemon_gone = True
        watchdog.finished.set()


def to_daemon(sock: socket.socket, watchdog: Watchdog) -> None:
    """ExaBGP -> daemon, byte for byte."""
    try:
        while data := os.read(sys.stdin.fileno(), CHUNK):
            sock.sendall(data)
    except OSError as error:
        sys.stderr.write(f"relay: to daemon: {error}\n")
    finally:
        watchdog.finished.set()


def main(argv: list[str]) -> int:
    forbid_dumps()
    if len(argv) != 3:
        sys.stderr.write("usage: relay.py SOCKET HEARTBEAT_TIMEOUT\n")
        return 2
    parent = os.getppid()
    die_with_parent(parent)
    watchdog = Watchdog(float(argv[2]))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
    except OSError as error:
        sys.stderr.write(f"relay: cannot connect to {argv[1]}: {error}\n")
        return 1
    for copy in (to_exabgp, to_daemon):
        threading.Thread(target=copy, args=(sock, watchdog), daemon=True).start()
    expired = watchdog.expired()
    if (expired or watchdog.daemon_gone) and os.getppid() == parent:
        why = f"no heartbeat for {watchdog.timeout:g} s" if expired else "the daemon closed"
        sys.stderr.write(f"relay: {why}, killing exabgp\n")
        os.kill(parent, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stderr.flush()
    # os._exit: the copy threads may sit in blocking reads that must not delay the exit.
    os._exit(code)

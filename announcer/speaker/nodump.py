"""ExaBGP's launcher: makes the process non-dumpable, then runs ExaBGP's own entry script.

    INTERPRETER -I nodump.py EXABGP server CONF

A copy of this file sits in the runtime directory next to the relay's; the daemon runs it
with the interpreter named on the first line of EXABGP (its `#!`), so ExaBGP's imports are
found as before, and `sys.argv` is EXABGP's own from then on. PR_SET_DUMPABLE 0 must come
from inside the process after exec (exec makes a process dumpable again): it keeps every
other process of ExaBGP's user out of /proc/<pid>/fd (ExaBGP's API pipes to the relay) and
/proc/<pid>/mem. It exits 1 if the kernel refuses.

It also spares ExaBGP a DNS lookup: at start ExaBGP calls `socket.getfqdn()` (exabgp.util.dns,
for a warning and the hostname capability) and keeps only the first label, which is the host
name itself; on a host whose name the resolver cannot answer, that call blocks for the
resolver's timeout (5 s measured) at every start and restart of ExaBGP.

Must not: import anything outside the standard library, or do anything else.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import socket
import sys

PR_SET_DUMPABLE = 4


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.stderr.write(f"nodump: prctl(PR_SET_DUMPABLE): {os.strerror(ctypes.get_errno())}\n")
        raise SystemExit(1)
    if len(sys.argv) < 2:
        sys.stderr.write("usage: nodump.py SCRIPT [ARG...]\n")
        raise SystemExit(2)
    del sys.argv[0]
    socket.getfqdn = _host_name
    runpy.run_path(sys.argv[0], run_name="__main__")


def _host_name(name: str = "") -> str:
    """`socket.getfqdn` without the resolver: the name itself, or this host's name."""
    return name or socket.gethostname()


if __name__ == "__main__":
    main()

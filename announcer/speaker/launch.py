"""Starting ExaBGP already unprivileged, tied to our life, with its output in our log.

The child switches user before exec (`user=`, `group=`, `extra_groups=[]`), so ExaBGP never
holds root. Changing credentials clears a process's parent-death signal, and CPython runs
`preexec_fn` after the switch (_posixsubprocess's child_exec: setgroups, setregid, setreuid,
then preexec_fn), so `preexec_fn` sets PR_SET_PDEATHSIG=SIGKILL last: when the daemon dies,
even by SIGKILL, the kernel kills ExaBGP at once.

Must not: restart, decide anything, or leave an output pipe unread (ExaBGP blocks once 64 KiB
of its output wait in a pipe, and its keepalives stop).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from announcer.speaker.runtime import Account

exabgp_log = logging.getLogger("announcer.exabgp")

PR_SET_PDEATHSIG: Final = 1
MAX_LOG_LINE: Final = 4096
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with(parent: int) -> Callable[[], None]:
    """A `preexec_fn` making the child die with `parent` (which must be the caller)."""

    def preexec() -> None:
        if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        # The parent may have died before the prctl: then the signal would never come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


async def launch(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, account: Account
) -> asyncio.subprocess.Process:
    """Start `argv` as `account` with piped stdout/stderr (drain them with `drain`)."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        preexec_fn=die_with(os.getpid()),
        start_new_session=True,  # a Ctrl-C meant for the daemon must not reach ExaBGP first
        user=account.uid if account.switch else None,
        group=account.gid if account.switch else None,
        extra_groups=[] if account.switch else None,
    )


async def drain(stream: asyncio.StreamReader, *, pid: int) -> None:
    """Log every line of `stream` as one INFO record on `announcer.exabgp`, until EOF.

    ExaBGP's lines carry no level (its short format is `<category> <message>`), so none is
    guessed: the daemon logs ExaBGP's exits and failures itself, at their proper level."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the reader's limit: asyncio dropped it
            exabgp_log.info("(overlong line dropped)", extra={"exabgp_pid": pid})
            continue
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            exabgp_log.info("%s", text[:MAX_LOG_LINE], extra={"exabgp_pid": pid})

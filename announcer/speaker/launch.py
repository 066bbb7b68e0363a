"""Starting ExaBGP already unprivileged, tied to our life, with its output in our log.

The child switches user before exec (`user=`, `group=`, `extra_groups=[]`), so ExaBGP never
holds root. Changing credentials clears a process's parent-death signal, and CPython runs
`preexec_fn` after the switch (_posixsubprocess's child_exec: setgroups, setregid, setreuid,
then preexec_fn), so `preexec_fn` sets PR_SET_PDEATHSIG=SIGKILL last: when the daemon dies,
even by SIGKILL, the kernel kills ExaBGP at once.

A Python `argv[0]` (ExaBGP's entry script) runs through the launcher `nodump.py` (a copy in
the runtime directory, which is `cwd`) under the interpreter of its `#!` line: it sets
PR_SET_DUMPABLE 0 inside the new process (exec resets it, so the daemon cannot do it from
outside) before running ExaBGP, so no other process of ExaBGP's user can open its API pipes
through /proc. Any other program runs as it is, dumpable, and the daemon then refuses its
relay (`announcer.speaker.peer`). Since the launcher reads the script rather than executing
it, `launch` first refuses, as exec would, a script its user may not execute (EACCES), so an
ExaBGP its user cannot run stays a start failure the supervisor can name.

Must not: restart, decide anything, or leave an output pipe unread (ExaBGP blocks once 64 KiB
of its output wait in a pipe, and its keepalives stop).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from announcer.config.useraccess import EXECUTE, user_can
from announcer.speaker.render import NODUMP
from announcer.speaker.runtime import Account

exabgp_log = logging.getLogger("announcer.exabgp")
log = logging.getLogger(__name__)

PR_SET_PDEATHSIG: Final = 1
MAX_LOG_LINE: Final = 4096
_MAX_SHEBANG: Final = 256
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


def without_dumps(argv: Sequence[str], *, launcher: Path) -> list[str]:
    """`argv` run through `launcher` (non-dumpable) when `argv[0]` is a Python script."""
    interpreter = script_interpreter(Path(argv[0]))
    if interpreter is None:
        log.warning(
            "exabgp.binary %s is not a Python script: ExaBGP runs dumpable and its relay will "
            "be refused",
            argv[0],
        )
        return list(argv)
    return [str(interpreter), "-I", str(launcher), *argv]


def _refuse_unexecutable(program: Path, account: Account) -> None:
    """What exec would refuse: `program` without execute permission for `account`'s user."""
    if account.switch:
        allowed = user_can(account.name, program, EXECUTE) is not False
    else:
        allowed = not program.exists() or os.access(program, os.X_OK)
    if not allowed:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(program))


def script_interpreter(script: Path) -> Path | None:
    """The Python interpreter on `script`'s `#!` line; None when it is not a Python script."""
    try:
        with script.open("rb") as stream:
            first = stream.readline(_MAX_SHEBANG)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if len(words) > 1 and Path(words[0]).name == "env":
        words = [shutil.which(words[1]) or "", *words[2:]]
    if not words or not Path(words[0]).name.startswith("python"):
        return None
    return Path(words[0])


async def launch(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, account: Account
) -> asyncio.subprocess.Process:
    """Start `argv` as `account` with piped stdout/stderr (drain them with `drain`); `cwd`
    is the runtime directory, which holds the launcher (`NODUMP`)."""
    _refuse_unexecutable(Path(argv[0]), account)
    return await asyncio.create_subprocess_exec(
        *without_dumps(argv, launcher=cwd / NODUMP),
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
    guessed: the daemon logs ExaBGP's exits and failures itself, at their proper level.
    Never raises: it runs in the supervisor's task group, where a failure would stop ExaBGP."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the reader's limit: asyncio dropped it
            exabgp_log.info("(overlong line dropped)", extra={"exabgp_pid": pid})
            continue
        except OSError as error:  # the pipe failed: nothing more will come
            log.warning("reading exabgp's output failed: %s", error, extra={"exabgp_pid": pid})
            return
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            exabgp_log.info("%s", text[:MAX_LOG_LINE], extra={"exabgp_pid": pid})

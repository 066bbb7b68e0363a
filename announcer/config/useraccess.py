"""Whether an unprivileged user could reach a file by its permission bits: every directory on
the way searchable, the file itself readable or executable. This is how `hostcheck` finds an
ExaBGP that its user cannot start (a virtualenv under /root or a pyenv under a home directory,
behind a 0700 directory).

Owner, group and other bits are applied as the kernel does (the first class that matches
decides); ACLs and capabilities are not read, so a `False` may be too strict where ACLs grant
more, never too lenient otherwise.

Must not: change anything, or raise: a user or a path that does not exist gives `None`.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Final

READ: Final = 4
EXECUTE: Final = 1


def _allows(info: os.stat_result, uid: int, gids: set[int], want: int) -> bool:
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == uid:
        bits = mode >> 6
    elif info.st_gid in gids:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def _identity(user: str) -> tuple[int, set[int]] | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    groups = {group.gr_gid for group in grp.getgrall() if user in group.gr_mem}
    return entry.pw_uid, {entry.pw_gid, *groups}


def _chain_allows(path: Path, uid: int, gids: set[int], want: int) -> bool:
    for folder in reversed(path.parents):  # from / down
        if not _allows(folder.stat(), uid, gids, EXECUTE):
            return False
    return _allows(path.stat(), uid, gids, want)


def user_can(user: str, path: Path, want: int) -> bool | None:
    """Whether `user` can reach `path` with `want` (READ, EXECUTE or both), following symbolic
    links (the directories of the path as written and of its target must be searchable).
    `None` when the user or the path does not exist."""
    identity = _identity(user)
    if identity is None:
        return None
    uid, gids = identity
    if uid == 0:
        return True
    try:
        target = path.resolve(strict=True)
        written = path.absolute()
        return _chain_allows(written.parent, uid, gids, EXECUTE) and _chain_allows(
            target, uid, gids, want
        )
    except OSError:
        return None


def interpreter(program: Path) -> Path | None:
    """The interpreter a script names in its `#!` line, if it has one."""
    try:
        with program.open("rb") as stream:
            first = stream.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return Path(words[0]) if words else None


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists (the daemon creates the rest)."""
    for candidate in (path, *path.parents):
        try:
            candidate.stat()
        except OSError:
            continue
        return candidate
    return Path("/")

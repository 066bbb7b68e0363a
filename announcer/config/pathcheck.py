"""Whether a directory the daemon writes in as root could be redirected by another user.

The daemon runs as root and writes secrets (exabgp.conf holds the MD5 passwords), the relay
it hands to ExaBGP and the drain flag below `state_dir`, and creates the status socket in
its directory. If another user can rename, replace or create entries on the way there, a
planted symlink makes root write where that user chose. A path is safe when every directory
from `/` down to it (following symlinks, each of which must be safe too) is owned by root
(or by the user running the daemon) and is not writable by group or others, except a
sticky directory such as /tmp, where others cannot touch root's entries. Parts that do not
exist yet are fine: the daemon creates them inside a safe directory.

This module owns that rule (`path_problem`, and `path_errors` for `check-config`). It must
not change anything nor raise: it reads with `lstat` and `readlink` only and answers with
the problem, naming the path, or None.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from announcer.config.errors import ConfigError
from announcer.config.model import Config

__all__ = ["path_errors", "path_problem", "trusted_owners"]

_MAX_LINKS: Final = 16


def trusted_owners() -> frozenset[int]:
    """Who may own the directories: root, and the user running this process."""
    return frozenset({0, os.geteuid()})


def path_problem(field: str, path: Path, *, owners: frozenset[int] | None = None) -> str | None:
    """Why `path` (the directory `field` names) is unsafe to write in as root, or None."""
    problem = _unsafe(path, trusted_owners() if owners is None else owners)
    return None if problem is None else f"{field}: {path}: {problem}"


def path_errors(config: Config) -> list[ConfigError]:
    """The problems of the directories the daemon writes in as root: it refuses to start."""
    checks = (("state_dir", config.state_dir), ("status.socket", config.status.socket))
    errors = []
    for field, path in checks:
        directory = path if field == "state_dir" else path.parent
        if (problem := _unsafe(directory, trusted_owners())) is not None:
            reason = f"is unsafe to write in as root: {problem}"
            errors.append(ConfigError(field, reason, value=str(path)))
    return errors


def _unsafe(path: Path, owners: frozenset[int]) -> str | None:
    return _walk(Path(os.path.normpath(Path.cwd() / path)), owners, links=0)


def _walk(path: Path, owners: frozenset[int], *, links: int) -> str | None:
    current = Path(path.anchor)
    for index, part in enumerate((path.anchor, *path.parts[1:])):
        current = current / part if index else current
        try:
            info = current.lstat()
        except FileNotFoundError:
            return None  # created later by the daemon, inside a directory already checked
        except OSError as error:
            return f"cannot check {current}: {error.strerror}"
        if stat.S_ISLNK(info.st_mode):
            return _follow(current, info, path.parts[index + 1 :], owners=owners, links=links)
        problem = _directory_problem(current, info, owners)
        if problem is not None:
            return problem
    return None


def _follow(
    link: Path, info: os.stat_result, rest: tuple[str, ...], *, owners: frozenset[int], links: int
) -> str | None:
    if info.st_uid not in owners:
        return f"{link} is a symlink owned by uid {info.st_uid}, not root"
    if links >= _MAX_LINKS:
        return f"too many symlinks at {link}"
    try:
        target = Path(os.path.normpath(link.parent / link.readlink()))
    except OSError as error:
        return f"cannot read the symlink {link}: {error.strerror}"
    return _walk(target.joinpath(*rest), owners, links=links + 1)


def _directory_problem(path: Path, info: os.stat_result, owners: frozenset[int]) -> str | None:
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in owners:
        return f"{path} is owned by uid {info.st_uid}, not root"
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        return f"{path} (mode {mode:04o}) is writable by group or others"
    return None

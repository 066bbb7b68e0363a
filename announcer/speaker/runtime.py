"""The files ExaBGP's unprivileged user needs, written where it can read them and no one else.

`<state_dir>/exabgp/` (0750, root:<user's group>) holds the relay's copy, ExaBGP's launcher
nodump.py and its empty settings file exabgp.env (0644: their content is public),
exabgp.conf (0640, root:<user's group>: it holds the MD5 passwords) and the relay's socket
(0660, root:<user's group>).
Files are replaced atomically, never rewritten in place, and never through a symlink:
`state_dir` must pass `announcer.config.pathcheck` (root's, not writable by others), and
the files are created relative to a directory descriptor with O_NOFOLLOW and O_EXCL.

Must not: start processes or render configurations.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from announcer.config.pathcheck import path_problem
from announcer.speaker import nodump, relay
from announcer.speaker.errors import SpeakerError
from announcer.speaker.render import ENVIRONMENT_FILE, RuntimePaths

DIRECTORY_MODE = 0o750
RELAY_MODE = 0o644
CONFIG_MODE = 0o640
SOCKET_MODE = 0o660


@dataclass(frozen=True)
class Account:
    """The user ExaBGP runs as. `switch` is False when we cannot (not root) or need not."""

    name: str
    uid: int
    gid: int
    switch: bool


def exabgp_account(name: str) -> Account:
    """The account `exabgp.user` names; SpeakerError if it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SpeakerError(f"exabgp.user: no user {name!r} on this host") from None
    switch = os.geteuid() == 0 and entry.pw_uid != 0
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid, switch=switch)


def prepare(paths: RuntimePaths, account: Account) -> None:
    """Create the runtime directory and the relay's copy; check the user can reach them.

    SpeakerError when `state_dir` could be redirected by another user (see
    `announcer.config.pathcheck`): the daemon writes secrets there as root."""
    state_dir = paths.directory.parent
    _refuse_unsafe(state_dir)
    state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    _refuse_unsafe(state_dir)  # someone may have raced the mkdir in a sticky directory
    with _directory(state_dir, follow=True) as state_fd:
        with contextlib.suppress(FileExistsError):
            os.mkdir(paths.directory.name, DIRECTORY_MODE, dir_fd=state_fd)
        with _directory(Path(paths.directory.name), dir_fd=state_fd) as fd:
            _own_fd(fd, account, DIRECTORY_MODE)
    _check_reachable(state_dir, account)
    write_file(paths.relay, Path(relay.__file__).read_bytes(), account=None, mode=RELAY_MODE)
    write_file(paths.launcher, Path(nodump.__file__).read_bytes(), account=None, mode=RELAY_MODE)
    write_file(paths.environment, ENVIRONMENT_FILE.encode(), account=None, mode=RELAY_MODE)


def write_file(path: Path, data: bytes, *, account: Account | None, mode: int) -> None:
    """Replace `path` atomically; group-owned by `account`'s group when given.

    Everything happens relative to the parent directory's descriptor, opened without
    following a symlink; the temporary file is created exclusively (O_EXCL, O_NOFOLLOW) and
    starts 0600, so a secret is never readable by others and nothing planted is written to."""
    with _directory(path.parent) as directory:
        name = f".{path.name}.{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=directory)
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                _own_fd(stream.fileno(), account, mode)
            os.replace(name, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=directory)
            raise


def own_socket(path: Path, account: Account) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, account.gid, follow_symlinks=False)
    path.chmod(mode=SOCKET_MODE)  # in a directory only root can write: it is our socket


def _refuse_unsafe(state_dir: Path) -> None:
    problem = path_problem("state_dir", state_dir)
    if problem is not None:
        raise SpeakerError(f"{problem}; refusing to write there as root")


@contextlib.contextmanager
def _directory(path: Path, *, dir_fd: int | None = None, follow: bool = False) -> Iterator[int]:
    """A descriptor of directory `path`; its last part must not be a symlink unless `follow`
    (for `state_dir`, whose symlinks `_refuse_unsafe` checked)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as error:
        raise SpeakerError(
            f"{path}: not a directory the daemon can use: {error.strerror}"
        ) from None
    try:
        yield fd
    finally:
        os.close(fd)


def _own_fd(fd: int, account: Account | None, mode: int) -> None:
    if account is not None and os.geteuid() == 0:
        os.fchown(fd, 0, account.gid)
    os.fchmod(fd, mode)


def _check_reachable(directory: Path, account: Account) -> None:
    """SpeakerError unless `account` may traverse every directory down to `directory`."""
    for ancestor in (directory, *directory.parents):
        info = ancestor.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == account.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise SpeakerError(
                f"{ancestor} (mode {stat.S_IMODE(info.st_mode):04o}) does not let exabgp.user "
                f"{account.name!r} reach {directory}: allow it to search (x) this directory"
            )

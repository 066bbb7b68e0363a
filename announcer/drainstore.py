"""The persisted drain flag: the one file that remembers an operator's drain.

It owns `DrainStore`, `<state_dir>/drained`, which survives restarts and reboots. It must
not decide anything (the daemon drains and undrains) and must never follow a symlink it did
not create: the daemon runs as root and `state_dir` is configurable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["DrainStore", "DrainStoreError"]

_DRAIN_FILE = "drained"
_DRAINED = "drained\n"
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DrainStoreError(OSError):
    """The drain flag could not be read or written."""


class DrainStore:
    """The drain flag, persisted as `<state_dir>/drained`.

    The file exists exactly while the node is drained. It is written atomically (temporary
    file, fsync, rename, fsync of the directory) so that a crash leaves either the old or the
    new state, never a torn one. It works relative to a descriptor of `state_dir` (which the
    daemon checked at start-up: `announcer.config.pathcheck`), and creates the temporary
    file exclusively and never through a symlink (O_EXCL, O_NOFOLLOW, a random name). A
    flag that cannot be read counts as drained: a node whose operator may have drained it
    must not start announcing.
    """

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._path = state_dir / _DRAIN_FILE

    @property
    def path(self) -> Path:
        return self._path

    def is_drained(self) -> bool:
        try:
            self._path.lstat()
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return True

    def set(self, drained: bool) -> None:
        """Persist the flag; returns once it is durable. Raises `DrainStoreError`."""
        try:
            self._dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            directory = os.open(self._dir, _DIRECTORY_FLAGS)
            try:
                if drained:
                    self._write_atomically(directory, _DRAINED)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(_DRAIN_FILE, dir_fd=directory)
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            state = "drained" if drained else "undrained"
            raise DrainStoreError(f"cannot record {state} state in {self._path}: {exc}") from exc

    def _write_atomically(self, directory: int, text: str) -> None:
        """Temporary file (created exclusively, never through a symlink), fsync, rename."""
        tmp = f".{_DRAIN_FILE}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _FILE_FLAGS, 0o644, dir_fd=directory)
        try:
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, _DRAIN_FILE, src_dir_fd=directory, dst_dir_fd=directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=directory)

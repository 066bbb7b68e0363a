"""The persisted drain flag: the one file that remembers an operator's drain.

It owns `DrainStore`, `<state_dir>/drained`, which survives restarts and reboots. It must
not decide anything (the daemon drains and undrains) and must never follow a symlink it did
not create: the daemon runs as root and `state_dir` is configurable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["DrainStore", "DrainStoreError"]

_DRAIN_FILE = "drained"
_DRAINED = "drained\n"


class DrainStoreError(OSError):
    """The drain flag could not be read or written."""


class DrainStore:
    """The drain flag, persisted as `<state_dir>/drained`.

    The file exists exactly while the node is drained. It is written atomically (temporary
    file, fsync, rename, fsync of the directory) so that a crash leaves either the old or the
    new state, never a torn one. A flag that cannot be read counts as drained: a node whose
    operator may have drained it must not start announcing.
    """

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._path = state_dir / _DRAIN_FILE

    @property
    def path(self) -> Path:
        return self._path

    def is_drained(self) -> bool:
        try:
            self._path.stat()
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return True

    def set(self, drained: bool) -> None:
        """Persist the flag; returns once it is durable. Raises `DrainStoreError`."""
        try:
            self._dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            if drained:
                self._write_atomically(_DRAINED)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self._path.unlink()
            self._fsync_dir()
        except OSError as exc:
            state = "drained" if drained else "undrained"
            raise DrainStoreError(f"cannot record {state} state in {self._path}: {exc}") from exc

    def _write_atomically(self, text: str) -> None:
        tmp = self._path.with_name(f".{_DRAIN_FILE}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self._path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""The daemon's lifecycle states and the persisted drain flag.

It owns `Lifecycle` (where the daemon is between start and stop, separate from `Health`,
which is what the probes say) and `DrainStore`, the one file that remembers an operator's
drain across restarts and reboots. It must not decide anything: the daemon moves between
lifecycle states, and `announcer.routes` turns a state into routes.
"""

from __future__ import annotations

import contextlib
import enum
import os
from pathlib import Path

__all__ = ["DrainStore", "DrainStoreError", "Lifecycle"]

_DRAIN_FILE = "drained"
_DRAINED = "drained\n"


class Lifecycle(enum.Enum):
    """Where the daemon is in its life, as far as routes are concerned."""

    RUNNING = "running"  # announcing whenever health allows
    DRAINING = "draining"  # drain requested: graceful-shutdown phase, then withdraw
    DRAINED = "drained"  # drain done: nothing announced until undrain
    STOPPING = "stopping"  # SIGTERM: graceful-shutdown phase, then withdraw, then exit
    STOPPED = "stopped"  # withdrawn for good, about to exit


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

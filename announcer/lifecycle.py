"""The daemon's lifecycle states.

It owns `Lifecycle`: where the daemon is between start and stop, separate from `Health`,
which is what the probes say. It must not decide anything nor do I/O: the daemon moves
between lifecycle states, `announcer.routes` turns a state into routes, and the persisted
drain flag is `announcer.drainstore`'s.
"""

from __future__ import annotations

import enum

__all__ = ["Lifecycle"]


class Lifecycle(enum.Enum):
    """Where the daemon is in its life, as far as routes are concerned."""

    RUNNING = "running"  # announcing whenever health allows
    DRAINING = "draining"  # drain requested: graceful-shutdown phase, then withdraw
    DRAINED = "drained"  # drain done: nothing announced until undrain
    STOPPING = "stopping"  # SIGTERM: graceful-shutdown phase, then withdraw, then exit
    STOPPED = "stopped"  # withdrawn for good, about to exit

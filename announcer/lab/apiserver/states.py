"""The fake apiserver's run-time states and their options.

Owns the vocabulary shared by the server, the routing and the control protocol. It must not
do I/O or know how a state is realised.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    """How the fake apiserver behaves, switchable at run time."""

    READY = "ready"
    STARTING = "starting"
    ETCD_DOWN = "etcd-down"
    SHUTDOWN = "shutdown"
    STOPPED = "stopped"
    # A killed process: listeners and every connection dropped at once, no close_notify.
    CRASH = "crash"
    HANG = "hang"
    # The TCP connect never completes: the kernel drops every SYN (a full accept queue).
    CONNECT_HANG = "connect-hang"
    TLS_STALL = "tls-stall"
    SLOW = "slow"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class Options:
    """Parameters of the current state; each applies to one state only.

    `delay` is `--shutdown-delay-duration` (seconds), `retry_after` is
    `--shutdown-send-retry-after`, `ms` is the answer delay of `slow`.
    """

    delay: float = 0.0
    retry_after: bool = False
    ms: float = 0.0


class ShutdownPhase(enum.Enum):
    """Where a graceful shutdown is, in the real apiserver's terms."""

    NONE = enum.auto()
    # SIGTERM seen: /readyz fails, everything else is served.
    INITIATED = enum.auto()
    # The shutdown delay has elapsed: new non-probe requests are turned away.
    NOT_ACCEPTING = enum.auto()

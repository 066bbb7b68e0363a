"""What the world tells the core: one frozen dataclass per kind of event.

The shell turns probes, timers, control requests, signals, ExaBGP's connection and answers,
and what it saw on the interface into these, and feeds them to `announcer.core.step` one at
a time. `client` identifies a waiting control client: the core answers it with exactly one
`Reply` effect. `generation` ties an answer to the command (and connection) it belongs to.

Must not: carry I/O objects (sockets, channels, tasks) or behaviour; events are plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from announcer.config.model import Config, IPAddress, VipNetwork
from announcer.health import ProbeResult

__all__ = [
    "BfdChanged",
    "CommandDone",
    "CommandError",
    "CommandLost",
    "CrashTriggered",
    "DrainRequested",
    "Event",
    "ExabgpConnected",
    "ExabgpDisconnected",
    "ExabgpExited",
    "ExabgpSilent",
    "ProbeDone",
    "ReloadRequested",
    "ServedAnswered",
    "SessionUp",
    "StopRequested",
    "Tick",
    "UndrainRequested",
    "VipFailed",
    "VipObserved",
]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: deadlines are checked, a probe may be due, the loop beats."""


@dataclass(frozen=True, slots=True)
class ProbeDone:
    result: ProbeResult


@dataclass(frozen=True, slots=True)
class CrashTriggered:
    """The connection held open to the apiserver ended and a new one was not accepted: the
    process may be gone, so probe at once (`announcer.crashwatch`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ServedAnswered:
    """The answer to `CheckServed`: whether some node accepts connections at the VIP."""

    served: bool
    reason: str


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """The drain flag is persisted (the shell did that first); `wait`: reply once withdrawn."""

    client: int | None = None
    wait: bool = False


@dataclass(frozen=True, slots=True)
class UndrainRequested:
    """The drain flag is cleared (the shell did that first)."""

    client: int | None = None


@dataclass(frozen=True, slots=True)
class StopRequested:
    """SIGTERM/SIGINT (or a client): graceful phase, withdraw; a second one hurries."""

    reason: str = "SIGTERM"
    client: int | None = None


@dataclass(frozen=True, slots=True)
class ReloadRequested:
    """A valid configuration was read; `restart_exabgp` when its bgp/exabgp sections changed."""

    config: Config
    restart_exabgp: bool = False
    client: int | None = None


@dataclass(frozen=True, slots=True)
class ExabgpConnected:
    """A relay connected: commands can be sent (ExaBGP may hold routes from before)."""


@dataclass(frozen=True, slots=True)
class ExabgpDisconnected:
    """The relay's connection is gone; ExaBGP may still be running and announcing."""


@dataclass(frozen=True, slots=True)
class ExabgpExited:
    """ExaBGP is known dead (exited, or killed): its sessions are closed, nothing announced."""


@dataclass(frozen=True, slots=True)
class ExabgpSilent:
    """ExaBGP did not answer a liveness command in time: it may be wedged, still announcing."""


@dataclass(frozen=True, slots=True)
class SessionUp:
    """ExaBGP established its BGP session with `neighbor`. It keeps no adj-rib-out
    (`adj-rib-out false`), so that session starts with nothing announced: the core sends it
    what is desired, or nothing while the daemon cannot (frozen, stopped)."""

    neighbor: IPAddress


@dataclass(frozen=True, slots=True)
class BfdChanged:
    """The BFD session with `neighbor` moved to `state` ("up", "down", "init", "admin_down");
    `diag` says why ("none", "detection_expired", "neighbor_down", ...). `planned`: an
    AdminDown, ours or the peer's (RFC 5882: a planned stop, not a failure)."""

    neighbor: str
    state: str
    diag: str
    planned: bool = False


@dataclass(frozen=True, slots=True)
class CommandDone:
    generation: int


@dataclass(frozen=True, slots=True)
class CommandError:
    generation: int


@dataclass(frozen=True, slots=True)
class CommandLost:
    """No acknowledgement in time, or the channel closed under the command."""

    generation: int
    why: str = "timeout"


@dataclass(frozen=True, slots=True)
class VipObserved:
    """The VIP is (`present`) or is not on the interface: after an add/remove, or a check."""

    vip: VipNetwork
    present: bool


@dataclass(frozen=True, slots=True)
class VipFailed:
    """The VIP could not be put on the interface: its routes are not announced."""

    vip: VipNetwork
    error: str


Event: TypeAlias = (
    Tick
    | ProbeDone
    | CrashTriggered
    | ServedAnswered
    | DrainRequested
    | UndrainRequested
    | StopRequested
    | ReloadRequested
    | ExabgpConnected
    | ExabgpDisconnected
    | ExabgpExited
    | ExabgpSilent
    | SessionUp
    | CommandDone
    | CommandError
    | CommandLost
    | VipObserved
    | VipFailed
    | BfdChanged
)

"""What the core asks of the world: one frozen dataclass per kind of effect.

The shell carries them out in order: commands go to ExaBGP through its channel (the answer
comes back as `CommandDone`/`CommandError`/`CommandLost` with the same `generation`), VIPs are
added to or removed from the interface (the outcome comes back as `VipObserved`/`VipFailed`),
ExaBGP is killed, stopped or restarted (its end comes back as `ExabgpExited`), clients get
their one reply, and log lines are written.

Must not: carry behaviour; effects are plain data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

from announcer.config.model import IPAddress, VipNetwork
from announcer.routes import Route

__all__ = [
    "Action",
    "AddVip",
    "Beat",
    "CheckServed",
    "Effect",
    "Exit",
    "KillExabgp",
    "Log",
    "RemoveVip",
    "Reply",
    "RestartExabgp",
    "Send",
    "StartProbe",
    "StopExabgp",
]


class Action(enum.Enum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True)
class Send:
    """One command to ExaBGP; answer with the same `generation`."""

    action: Action
    route: Route
    generation: int


@dataclass(frozen=True, slots=True)
class AddVip:
    vip: VipNetwork


@dataclass(frozen=True, slots=True)
class RemoveVip:
    vip: VipNetwork


@dataclass(frozen=True, slots=True)
class KillExabgp:
    """SIGKILL ExaBGP now: its sessions close, which withdraws everything it announced."""

    reason: str


@dataclass(frozen=True, slots=True)
class StopExabgp:
    """Terminate ExaBGP for good (nothing is announced any more): the end of a stop."""


@dataclass(frozen=True, slots=True)
class RestartExabgp:
    """A reload changed ExaBGP's configuration: stop it and start a new one."""


@dataclass(frozen=True, slots=True)
class StartProbe:
    """Probe the apiserver; answer with `ProbeDone`."""


@dataclass(frozen=True, slots=True)
class CheckServed:
    """Ask whether anyone serves the VIP (`announcer.served.anyone_serves`) at `addresses`,
    `port`, within `timeout` seconds; answer with `ServedAnswered`."""

    addresses: tuple[IPAddress, ...]
    port: int
    timeout: float


@dataclass(frozen=True, slots=True)
class Beat:
    """The loop is alive: feed the relay's heartbeat and systemd's watchdog."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The one answer to a waiting client; `ok` False is an error answer."""

    client: int
    ok: bool
    text: str


@dataclass(frozen=True, slots=True)
class Log:
    level: int
    message: str
    fields: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Exit:
    """Stopped: nothing announced, VIPs off the interface, ExaBGP gone."""


Effect: TypeAlias = (
    Send
    | AddVip
    | RemoveVip
    | KillExabgp
    | StopExabgp
    | RestartExabgp
    | StartProbe
    | CheckServed
    | Beat
    | Reply
    | Log
    | Exit
)

"""What the speaker tells its owner: relay (re)connected or lost, and BGP session changes;
and the table of sessions those changes keep.

Must not: do I/O or read a clock (the caller passes `now`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from announcer.speaker.channel import Channel
from announcer.speaker.events import IPAddress, SessionEvent, SessionState


@dataclass(frozen=True)
class Session:
    """One neighbor's BGP session; `since` is on the speaker's (monotonic) clock."""

    peer: IPAddress
    state: SessionState
    reason: str
    since: float


@dataclass(frozen=True)
class Connected:
    """A relay connected: a fresh ExaBGP (or a respawned relay). Replay every desired route
    through `channel`; what an earlier channel was told may be gone."""

    channel: Channel


@dataclass(frozen=True)
class Disconnected:
    """The relay connection is gone: no channel until the next `Connected`."""

    reason: str


@dataclass(frozen=True)
class SessionChanged:
    session: Session


@dataclass(frozen=True)
class Exited:
    """The ExaBGP process is gone (exited or killed): its sessions are closed."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """ExaBGP's supervision itself died: nothing restarts ExaBGP any more. Fail closed."""

    error: BaseException


SpeakerEvent = Connected | Disconnected | SessionChanged | Exited | Failed


@dataclass(frozen=True)
class SpeakerStatus:
    """A snapshot for the status socket and metrics."""

    pid: int | None
    restarts: int
    connected: bool
    sessions: tuple[Session, ...]


class Sessions:
    """The last known state of each configured neighbor's session."""

    def __init__(self, peers: Iterable[IPAddress], *, now: float) -> None:
        self._table = {p: Session(p, SessionState.DOWN, "exabgp not started", now) for p in peers}

    def view(self) -> Mapping[IPAddress, Session]:
        return dict(self._table)

    def apply(self, event: SessionEvent, *, now: float) -> Session | None:
        """Record what ExaBGP reported; None if the peer is not a configured neighbor."""
        if event.peer not in self._table:
            return None
        session = Session(event.peer, event.state, event.reason, now)
        self._table[event.peer] = session
        return session

    def all_down(self, reason: str, *, now: float) -> list[Session]:
        """Mark every session that is not down as down; the ones that changed."""
        changed = [
            Session(p, SessionState.DOWN, reason, now)
            for p, session in self._table.items()
            if session.state is not SessionState.DOWN
        ]
        self._table.update((session.peer, session) for session in changed)
        return changed

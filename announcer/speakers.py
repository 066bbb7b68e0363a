"""The daemon's ExaBGP: the running Speaker, the one a reload prepared, and their events
turned into the core's.

Only the current Speaker's events count (an earlier ExaBGP's last words are dropped);
`Connected`, `Disconnected` and `Exited` become `ExabgpConnected`, `ExabgpDisconnected` and
`ExabgpExited`, a session that came up becomes `SessionUp`, and `Failed` (nothing restarts
ExaBGP any more) becomes a `SpeakerFailure` that fails the daemon closed. Restarts are
counted over every Speaker of the daemon's life.

Must not: decide anything, or start and stop Speakers of its own accord (the daemon and the
executor do, when the core says so).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeAlias

from announcer.config import Config
from announcer.core import events as ev
from announcer.speaker import (
    Backoff,
    Connected,
    Disconnected,
    Exited,
    Failed,
    SessionChanged,
    SessionState,
    Speaker,
    SpeakerEvent,
    SpeakerStatus,
)

__all__ = ["SpeakerFailure", "Speakers"]

_NO_SPEAKER: Final = SpeakerStatus(pid=None, restarts=0, connected=False, sessions=())


class SpeakerFailure(Exception):
    """ExaBGP's supervision died: nothing restarts ExaBGP any more."""


Item: TypeAlias = ev.Event | SpeakerFailure


class Speakers:
    def __init__(
        self,
        *,
        emit: Callable[[Item], None],
        backoff: Backoff | None,
        clock: Callable[[], float],
        python: Path | None,
    ) -> None:
        self._emit = emit
        self._backoff = backoff
        self._clock = clock
        self._python = python
        self.current: Speaker | None = None
        self.next: Speaker | None = None  # prepared by a reload, started by the executor
        self._earlier_restarts = 0  # of the Speakers a reload replaced

    def new(self, config: Config) -> Speaker:
        """A Speaker for `config` whose events count while it is current (SpeakerError)."""
        speaker: Speaker

        def on_event(event: SpeakerEvent) -> None:
            if speaker is self.current:
                self._translate(event)

        speaker = Speaker(
            config,
            on_event=on_event,
            backoff=self._backoff,
            clock=self._clock,
            python=self._python,
        )
        return speaker

    def replace(self, new: Speaker) -> None:
        if self.current is not None:  # keep counting from its restarts
            self._earlier_restarts += self.current.restarts
        self.current = new

    def restarts(self) -> int:
        """ExaBGP restarts after an exit, over every Speaker of this daemon's life."""
        current = self.current.restarts if self.current is not None else 0
        return self._earlier_restarts + current

    def status(self) -> SpeakerStatus:
        return self.current.status() if self.current is not None else _NO_SPEAKER

    async def stop_all(self) -> None:
        for speaker in (self.current, self.next):
            if speaker is not None:
                await speaker.stop()

    def _translate(self, event: SpeakerEvent) -> None:
        if isinstance(event, Connected):
            self._emit(ev.ExabgpConnected())
        elif isinstance(event, Disconnected):
            self._emit(ev.ExabgpDisconnected())
        elif isinstance(event, Exited):
            self._emit(ev.ExabgpExited())
        elif isinstance(event, Failed):
            self._emit(SpeakerFailure(f"exabgp supervision failed: {event.error}"))
        elif isinstance(event, SessionChanged) and event.session.state is SessionState.UP:
            self._emit(ev.SessionUp(event.session.peer))

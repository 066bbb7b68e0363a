"""The daemon's BFD sessions: one per BGP neighbor with `bfd.enabled`, on a `BfdService`.

`sync(config)` makes the service's sessions match the configuration: sessions of neighbors
gone (or whose addresses changed) are removed (AdminDown: planned), new ones added, changed
timers applied (Poll/Final). A session whose local address is not on any interface yet
cannot open its socket (`BfdSocketError`): it is logged once and retried at the next sync
(the daemon syncs on every tick), never fatal. Every state change of a session becomes the
core's `BfdChanged` for its neighbor; a Down is `planned` when it is an AdminDown, ours or
the peer's (RFC 5882).

The session's local address is the neighbor's `local_address`, which the configuration
requires when BFD is enabled (single-hop BFD checks the source address of the peer's
packets, and multihop needs a fixed one).

Must not: decide what a BFD change means (the core records it), nor run BFD itself
(`announcer.bfd`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from announcer.bfd import BfdService, BfdSocketError, Diag, Profile, SessionKey, State, StateChange
from announcer.config.model import Config, NeighborConfig
from announcer.core import events as ev

__all__ = ["NeighborBfd", "sessions_of"]

log = logging.getLogger(__name__)


def sessions_of(config: Config) -> dict[SessionKey, Profile]:
    """The BFD sessions `config` asks for, with their profiles."""
    wanted: dict[SessionKey, Profile] = {}
    for neighbor in config.bgp.neighbors:
        if neighbor.bfd.enabled and neighbor.local_address is not None:
            wanted[_key(neighbor)] = Profile.from_seconds(
                transmit=neighbor.bfd.transmit_interval,
                receive=neighbor.bfd.receive_interval,
                multiplier=neighbor.bfd.detect_multiplier,
            )
    return wanted


def _key(neighbor: NeighborConfig) -> SessionKey:
    assert neighbor.local_address is not None
    multihop = neighbor.multihop is not None
    return SessionKey(neighbor.address, neighbor.local_address, multihop=multihop)


class NeighborBfd:
    """Owns which sessions run; `service` is attached once the daemon entered it."""

    def __init__(self, emit: Callable[[ev.Event], None]) -> None:
        self._emit = emit
        self.service: BfdService | None = None
        self._profiles: dict[SessionKey, Profile] = {}  # sessions running
        self._failed: dict[SessionKey, str] = {}  # sessions that could not start, why

    def sync(self, config: Config) -> None:
        service = self.service
        if service is None:
            return
        wanted = sessions_of(config)
        for key in [k for k in self._profiles if k not in wanted]:
            service.remove(key)
            del self._profiles[key]
        for key in [k for k in self._failed if k not in wanted]:
            del self._failed[key]
        for key, profile in wanted.items():
            if key not in self._profiles:
                self._start(service, key, profile)
            elif self._profiles[key] != profile:
                service.set_profile(key, profile)
                self._profiles[key] = profile

    def _start(self, service: BfdService, key: SessionKey, profile: Profile) -> None:
        try:
            service.add(key, profile)
        except BfdSocketError as exc:
            if self._failed.get(key) != str(exc):
                log.error(
                    "bfd with %s cannot start yet (retrying): %s",
                    key.peer,
                    exc,
                    extra={"event": "bfd_error", "neighbor": str(key.peer)},
                )
            self._failed[key] = str(exc)
            return
        if self._failed.pop(key, None) is not None:
            log.info("bfd with %s started", key.peer, extra={"event": "bfd_started"})
        self._profiles[key] = profile

    def changed(self, key: SessionKey, change: StateChange) -> None:
        """The service's `on_change`: must not raise."""
        self._emit(
            ev.BfdChanged(
                neighbor=str(key.peer),
                state=change.new.name.lower(),
                diag=change.diag.name.lower(),
                planned=self._planned(key, change),
            )
        )

    def _planned(self, key: SessionKey, change: StateChange) -> bool:
        if change.new is State.ADMIN_DOWN:
            return True
        if change.new is not State.DOWN or change.diag is not Diag.NEIGHBOR_DOWN:
            return False
        service = self.service
        statuses = service.status() if service is not None else []
        return any(s.key == key and s.remote_state is State.ADMIN_DOWN for s in statuses)

"""What operators ask of a running daemon: drain, undrain (status socket) and reload (SIGHUP).

Each request becomes an event for the core (`announcer.core.step`), with a client number the
core answers exactly once; this module awaits that answer. It writes no decision state.
- drain: the flag is persisted first (a drain that a crash could forget is refused), then
  the core enters the graceful phase; with `wait`, the core answers once nothing is exposed
  (or says why not: undrained, stopping, not confirmed in time). undrain: the flag is cleared
  first, then the core announces as health allows.
- reload: the file is read and checked like at start. An invalid file changes nothing: the
  error is logged and shown in the status until a reload succeeds. A valid one goes to the
  core at once: probe settings, VIPs, attributes, drain settings; a change of `bgp` or
  `exabgp` restarts ExaBGP through a new Speaker; `status`, `state_dir`, `loopback` and
  `metrics` keep their running values until the daemon restarts.

Must not: import the daemon, decide anything, or touch the core's state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeAlias

from announcer.config import Config, ConfigError, load_config
from announcer.core.events import DrainRequested, Event, ReloadRequested, UndrainRequested
from announcer.drainstore import DrainStore, DrainStoreError
from announcer.speaker import SpeakerError
from announcer.status_protocol import ControlError

__all__ = ["RESTART_ONLY", "SPEAKER", "Control", "Submit", "changed_sections"]

log = logging.getLogger(__name__)

# Sections read once at start: a reload keeps their running values.
RESTART_ONLY: Final = ("status", "state_dir", "loopback", "metrics")
# Sections that live in ExaBGP's configuration: a change restarts ExaBGP.
SPEAKER: Final = ("bgp", "exabgp")

# Hands the core an event made for a client number; the core's answer (ok, text).
Submit: TypeAlias = Callable[[Callable[[int], Event]], Awaitable[tuple[bool, str]]]


def changed_sections(old: Config, new: Config) -> list[str]:
    return [
        f.name for f in dataclasses.fields(Config) if getattr(old, f.name) != getattr(new, f.name)
    ]


class Control:
    """`prepare(config)` readies a new Speaker for a restart (raises SpeakerError);
    `reloaded(config)` tells the daemon's I/O parts (the probe, the pulse) of a new config."""

    def __init__(
        self,
        *,
        path: Path,
        store: DrainStore,
        submit: Submit,
        current: Callable[[], Config],
        prepare: Callable[[Config], None],
        reloaded: Callable[[Config], None],
    ) -> None:
        self._path = path
        self._store = store
        self._submit = submit
        self._current = current
        self._prepare = prepare
        self._reloaded = reloaded
        self._store_lock = asyncio.Lock()
        self.config_error: str | None = None

    async def drain(self, wait: bool) -> str:
        async with self._store_lock:  # persisted and handed on in the order asked
            await self._persist(True)
            log.info("drain requested", extra={"event": "drain", "wait": wait})
            answer = self._submit(lambda client: DrainRequested(client, wait))
        return _checked(await answer)

    async def undrain(self) -> str:
        async with self._store_lock:
            await self._persist(False)
            log.info("undrain requested", extra={"event": "undrain"})
            answer = self._submit(lambda client: UndrainRequested(client))
        return _checked(await answer)

    async def _persist(self, drained: bool) -> None:
        try:
            await asyncio.to_thread(self._store.set, drained)
        except DrainStoreError as exc:
            log.error("%s", exc, extra={"event": "drain" if drained else "undrain"})
            raise ControlError(str(exc)) from exc

    async def reload(self) -> None:
        old = self._current()
        try:
            new = self._effective(old, await asyncio.to_thread(load_config, self._path))
            restart = any(getattr(old, s) != getattr(new, s) for s in SPEAKER)
            if restart:
                self._prepare(new)
        except (ConfigError, SpeakerError) as exc:
            message = exc.message if isinstance(exc, ConfigError) else str(exc)
            self.config_error = message
            log.error(
                "reload failed, keeping the running configuration: %s",
                message.replace("\n", "; "),
                extra={"event": "reload", "result": "error"},
            )
            return
        ok, text = await self._submit(lambda client: ReloadRequested(new, restart, client))
        if not ok:
            log.info("SIGHUP ignored: %s", text, extra={"event": "reload", "result": "ignored"})
            return
        self.config_error = None
        self._reloaded(new)
        changed = changed_sections(old, new)
        if restart:
            log.warning(
                "bgp/exabgp settings changed: restarting exabgp (its sessions reset)",
                extra={"event": "exabgp-restart"},
            )
        log.info(
            "reloaded %s: %s",
            self._path,
            ", ".join(changed) or "no change",
            extra={"event": "reload", "result": "ok", "changed": ",".join(changed)},
        )

    def _effective(self, old: Config, new: Config) -> Config:
        kept = {name: getattr(old, name) for name in RESTART_ONLY}
        for name, value in kept.items():
            if getattr(new, name) != value:
                log.warning(
                    "%s changed: takes effect when the daemon restarts",
                    name,
                    extra={"event": "reload", "section": name},
                )
        return dataclasses.replace(new, **kept)


def _checked(answer: tuple[bool, str]) -> str:
    ok, text = answer
    if not ok:
        raise ControlError(text)
    return text

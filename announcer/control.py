"""What operators ask of a running daemon: drain, undrain (status socket) and reload (SIGHUP).

- drain: the flag is persisted first (a drain that a crash could forget is refused), then
  the state enters the graceful phase; with `wait`, the answer comes once the routes are
  withdrawn. undrain: the flag is cleared first, then the node announces as health allows.
- reload: the file is read and checked like at start. An invalid file changes nothing: the
  error is logged and shown in the status until a reload succeeds. A valid one is applied at
  once: probe settings, VIPs, attributes, drain settings; a change of `bgp` or `exabgp`
  restarts ExaBGP through a new Speaker (the reconciler replays on its connection); `status`,
  `state_dir`, `loopback` and `metrics` keep their running values until the daemon restarts.
  A password file whose content changed under the same name is read at ExaBGP's next start.

Must not: decide or apply anything itself; it updates the daemon's parts and wakes the
decision loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Final

from announcer.config import Config, ConfigError, load_config
from announcer.drainstore import DrainStoreError
from announcer.lifecycle import Lifecycle
from announcer.speaker import Speaker, SpeakerError, render_exabgp
from announcer.status_protocol import ControlError

if TYPE_CHECKING:
    from announcer.daemon import Daemon

__all__ = ["RESTART_ONLY", "Control", "changed_sections"]

log = logging.getLogger(__name__)

# Sections read once at start: a reload keeps their running values.
RESTART_ONLY: Final = ("status", "state_dir", "loopback", "metrics")
# Sections that live in ExaBGP's configuration: a change restarts ExaBGP.
SPEAKER: Final = ("bgp", "exabgp")
# How long `drain --wait` waits for ExaBGP's acknowledgements once the graceful phase ended.
CONFIRM_TIMEOUT: Final = 5.0


def changed_sections(old: Config, new: Config) -> list[str]:
    return [
        f.name for f in dataclasses.fields(Config) if getattr(old, f.name) != getattr(new, f.name)
    ]


class Control:
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._store_lock = asyncio.Lock()

    async def drain(self, wait: bool) -> str:
        d = self._daemon
        await self._persist(True)
        d.state.drain(d.clock.now(), announcing=bool(d.reconciler.installed))
        log.info("drain requested", extra={"event": "drain", "wait": wait})
        d.loop.wake()
        if wait:
            return await self._drained()
        lifecycle = d.state.lifecycle
        if lifecycle is Lifecycle.DRAINING:
            delay = d.config.drain.delay
            return f"draining: graceful shutdown for {delay:g} s, then withdrawn"
        if lifecycle is Lifecycle.DRAINED:
            return "drained: nothing announced"
        return f"drain recorded; the daemon is {lifecycle.value}"

    async def undrain(self) -> str:
        d = self._daemon
        await self._persist(False)
        d.state.undrain()
        log.info("undrain requested", extra={"event": "undrain"})
        d.loop.wake()
        if d.state.lifecycle is Lifecycle.RUNNING:
            return "undrained: announcing whenever health is up"
        return f"undrain recorded; the daemon is {d.state.lifecycle.value}"

    async def _persist(self, drained: bool) -> None:
        async with self._store_lock:
            try:
                await asyncio.to_thread(self._daemon.store.set, drained)
            except DrainStoreError as exc:
                log.error("%s", exc, extra={"event": "drain" if drained else "undrain"})
                raise ControlError(str(exc)) from exc

    async def _drained(self) -> str:
        d = self._daemon
        delay = d.config.drain.delay
        await d.loop.until(lambda: d.state.lifecycle is not Lifecycle.DRAINING, delay + 5.0)
        lifecycle = d.state.lifecycle
        if lifecycle is Lifecycle.DRAINING:
            raise ControlError("still draining; see `announcer status`")
        if lifecycle is Lifecycle.RUNNING:
            raise ControlError("undrained before the withdrawal finished")
        confirmed = await d.reconciler.wait_converged(CONFIRM_TIMEOUT)
        if not confirmed and d.reconciler.installed:
            raise ControlError("drained, but exabgp has not confirmed the withdrawal yet")
        return "drained: routes withdrawn"

    async def reload(self) -> None:
        d = self._daemon
        if d.stopping:
            log.info("SIGHUP ignored: stopping", extra={"event": "reload", "result": "ignored"})
            return
        try:
            new = self._effective(await asyncio.to_thread(load_config, d.path))
            speaker_changed = any(getattr(d.config, s) != getattr(new, s) for s in SPEAKER)
            speaker = self._prepare_speaker(new) if speaker_changed else None
        except (ConfigError, SpeakerError) as exc:
            message = exc.message if isinstance(exc, ConfigError) else str(exc)
            d.config_error = message
            log.error(
                "reload failed, keeping the running configuration: %s",
                message.replace("\n", "; "),
                extra={"event": "reload", "result": "error"},
            )
            return
        changed = changed_sections(d.config, new)
        d.config_error = None
        self._apply(new)
        if speaker is not None:
            await self._restart_speaker(speaker)
        d.loop.wake()
        log.info(
            "reloaded %s: %s",
            d.path,
            ", ".join(changed) or "no change",
            extra={"event": "reload", "result": "ok", "changed": ",".join(changed)},
        )

    def _effective(self, new: Config) -> Config:
        old = self._daemon.config
        kept = {name: getattr(old, name) for name in RESTART_ONLY}
        for name, value in kept.items():
            if getattr(new, name) != value:
                log.warning(
                    "%s changed: takes effect when the daemon restarts",
                    name,
                    extra={"event": "reload", "section": name},
                )
        return dataclasses.replace(new, **kept)

    def _prepare_speaker(self, config: Config) -> Speaker:
        render_exabgp(config, redact=False)  # RenderError before anything is stopped
        return self._daemon.new_speaker(config)

    def _apply(self, config: Config) -> None:
        d = self._daemon
        d.state.reconfigure(config)
        d.checker.configure(config.apiserver)
        d.applier.withdraw_wait = config.drain.withdraw_wait
        d.loop.pulse = d.pulse(config)

    async def _restart_speaker(self, speaker: Speaker) -> None:
        d = self._daemon
        log.warning(
            "bgp/exabgp settings changed: restarting exabgp (its sessions reset)",
            extra={"event": "exabgp-restart"},
        )
        old, d.speaker = d.speaker, None
        if old is not None:
            await old.stop()
        d.reconciler.disconnect()
        d.speaker = speaker
        await speaker.start()

"""`announcer run`: the daemon's parts wired together, and their lives.

```
run ── status socket, VIPs left by a previous run removed, Speaker (ExaBGP) started,
 │     metrics endpoint (if `metrics.listen`: a taken address is logged, not fatal)
 └─ TaskGroup: reconciler (the one writer to ExaBGP)
               decision loop (probe -> state -> apply; relay heartbeat, systemd watchdog)
               speaker events (relay connected: replay; gone: stop sending)
               signals (TERM/INT: stop, twice: at once; HUP: reload)
               stopper (graceful phase, withdraw, wait, VIPs off, done)
finally: withdraw with its own deadline, VIPs off, ExaBGP stopped, sockets closed
```
Whatever ends the task group (a clean stop, a crashed task), the `finally` withdraws what is
still announced before ExaBGP is stopped: the code that announced is the code that withdraws.
A crash exits 1, a stop 0. Control requests (drain, undrain) and reloads are in
`announcer.control`.

Must not: decide (`state`), apply (`apply`), probe (`checker`) or talk to ExaBGP (`reconcile`,
`speaker`) itself; it only starts, connects and stops those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from announcer import sdnotify
from announcer.apply import Applier, VipTable
from announcer.checker import ApiserverCheck
from announcer.config import Config, LoopbackConfig
from announcer.control import Control
from announcer.decide import Clock, DecisionLoop, LoopClock
from announcer.drainstore import DrainStore
from announcer.lifecycle import Lifecycle
from announcer.loopback import Loopback, LoopbackError
from announcer.metrics import Metrics, MetricsServer
from announcer.reconcile import Reconciler, SinkFailure
from announcer.signals import SignalQueue
from announcer.snapshot import build_snapshot
from announcer.speaker import (
    Backoff,
    ChannelClosed,
    Connected,
    Disconnected,
    Failed,
    Speaker,
    SpeakerError,
    SpeakerEvent,
    SpeakerStatus,
)
from announcer.state import NodeState
from announcer.status import StatusServer, StatusServerError
from announcer.status_protocol import StatusSnapshot

__all__ = ["ACK_TIMEOUT", "EXIT_FAILURE", "EXIT_OK", "Daemon", "Seams", "run_daemon"]

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
ACK_TIMEOUT: Final = 2.0
# How long the last withdraw may take before ExaBGP is stopped anyway (which withdraws too).
WITHDRAW_DEADLINE: Final = 1.0


_NO_SPEAKER: Final = SpeakerStatus(pid=None, restarts=0, connected=False, sessions=())


def _loopback(config: LoopbackConfig) -> VipTable:
    return Loopback(config.interface)


@dataclass(frozen=True, kw_only=True)
class Seams:
    """What tests replace: time, the interface, ExaBGP's pacing, systemd."""

    clock: Clock = field(default_factory=LoopClock)
    wall: Callable[[], float] = time.time
    vip_table: Callable[[LoopbackConfig], VipTable] = _loopback
    backoff: Backoff | None = None
    python: Path | None = None  # the relay's interpreter
    notify: Callable[[str], bool] = sdnotify.notify
    watchdog: float | None = None  # systemd's watchdog interval, if any


def run_daemon(path: Path, config: Config, *, seams: Seams | None = None) -> int:
    """Run the daemon on a new event loop until it stops; its exit status."""

    async def main() -> int:
        return await Daemon(path, config, seams=seams).run()

    return asyncio.run(main())


class Daemon:
    """`await Daemon(path, config).run()` -> exit status; created on the running loop."""

    def __init__(self, path: Path, config: Config, *, seams: Seams | None = None) -> None:
        self.seams = seams or Seams(watchdog=sdnotify.watchdog_interval())
        self.path = path
        self.clock = self.seams.clock
        self.store = DrainStore(config.state_dir)
        self.state = NodeState(
            config, drained=self.store.is_drained(), now=self.clock.now(), wall=self.seams.wall
        )
        self.reconciler = Reconciler(None, ack_timeout=ACK_TIMEOUT, on_error=self._sink_failed)
        vips = self.seams.vip_table(config.loopback) if config.loopback.manage else None
        self.applier = Applier(self.reconciler, vips, withdraw_wait=config.drain.withdraw_wait)
        self.checker = ApiserverCheck(config.apiserver, clock=self.clock.now)
        self.metrics = Metrics(snapshot=self.snapshot, exabgp_restarts=self.exabgp_restarts)
        self.loop = DecisionLoop(
            self.state,
            check=self.checker,
            applier=self.applier,
            reconciler=self.reconciler,
            clock=self.clock,
            beat=self._beat,
            pulse=self.pulse(config),
            on_decided=self._decided,
            on_probed=self.metrics.record_probe,
        )
        self.control = Control(self)
        self.status = StatusServer(
            config.status.socket,
            mode=config.status.mode,
            group=config.status.group,
            snapshot=self.snapshot,
            on_drain=self.control.drain,
            on_undrain=self.control.undrain,
        )
        self.speaker: Speaker | None = None
        self._earlier_restarts = 0  # of the Speakers a reload replaced
        listen = config.metrics.listen
        self.metrics_server = MetricsServer(self.metrics, listen) if listen else None
        self.config_error: str | None = None
        self.sink_failures = 0
        self.stopping = False
        self.hurry = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._finished = asyncio.Event()
        self._events: asyncio.Queue[tuple[Speaker, SpeakerEvent]] = asyncio.Queue()
        self._connected_once = False
        self._ready = False
        self._announced_at_stop = False
        self._status_line = ""

    @property
    def config(self) -> Config:
        return self.state.config

    def pulse(self, config: Config) -> float:
        """How often the loop beats: often enough for the relay and systemd's watchdog."""
        pulse = min(config.apiserver.interval, config.exabgp.heartbeat_timeout / 4)
        if self.seams.watchdog is not None:
            pulse = min(pulse, self.seams.watchdog / 4)
        return pulse

    # -- life

    async def run(self) -> int:
        code = EXIT_FAILURE
        async with SignalQueue() as signals:
            try:
                await self._start()
                await self._serve(signals)
                code = EXIT_OK
            except (StatusServerError, SpeakerError, LoopbackError) as exc:
                log.critical("cannot start: %s", exc, extra={"event": "failed"})
            except Exception as exc:
                log.critical(
                    "a task failed: withdrawing and exiting",
                    exc_info=exc,
                    extra={"event": "failed"},
                )
            finally:
                await self._shutdown()
        log.info("stopped (exit %d)", code, extra={"event": "stopped", "code": code})
        return code

    async def _start(self) -> None:
        log.info(
            "starting: %s",
            self.path,
            extra={"event": "start", "drained": self.state.drained},
        )
        await self.status.start()
        # A daemon killed with SIGKILL left its VIPs on the interface; health starts DOWN.
        await self.applier.clear(self.config.vips)
        self.speaker = self.new_speaker(self.config)
        await self.speaker.start()
        await self._serve_metrics()

    async def _serve_metrics(self) -> None:
        # Optional: a taken port is logged, and the daemon announces all the same.
        if self.metrics_server is not None:
            try:
                await self.metrics_server.start()
            except OSError as exc:
                log.error(
                    "no metrics: cannot listen on %s: %s",
                    self.config.metrics.listen,
                    exc,
                    extra={"event": "metrics"},
                )
                self.metrics_server = None

    async def _serve(self, signals: SignalQueue) -> None:
        jobs: dict[str, Coroutine[None, None, None]] = {
            "reconciler": self.reconciler.run(),
            "decision-loop": self.loop.run(),
            "speaker-events": self._speaker_events(),
            "signals": self._signals(signals),
            "stopper": self._stopper(),
        }
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job, name=name) for name, job in jobs.items()]
            await self._finished.wait()
            for task in tasks:
                task.cancel()

    async def _shutdown(self) -> None:
        """Fail closed: whatever is still announced is withdrawn before ExaBGP stops."""
        self.seams.notify("STOPPING=1")
        await self._withdraw_all()
        with contextlib.suppress(LoopbackError):
            await self.applier.clear(self.config.vips)
        if self.speaker is not None:
            await self.speaker.stop()
        await self.status.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.checker.aclose()

    async def _withdraw_all(self) -> None:
        self.reconciler.set_desired(())
        if self.reconciler.converged or not self.reconciler.connected:
            return
        runner = asyncio.create_task(self.reconciler.run(), name="last-withdraw")
        try:
            if not await self.reconciler.wait_converged(WITHDRAW_DEADLINE):
                log.warning("withdraw not confirmed in time: stopping exabgp anyway")
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # -- stopping

    def request_stop(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopping:
            log.warning(
                "%s again: withdrawing at once", name, extra={"event": "stop", "signal": name}
            )
            self.state.hurry()
            self.hurry.set()
        else:
            self.stopping = True
            self._announced_at_stop = bool(self.reconciler.installed)
            log.info("%s: stopping", name, extra={"event": "stop", "signal": name})
            self.seams.notify("STOPPING=1")
            self.state.stop(self.clock.now(), announcing=self._announced_at_stop)
            self._stop_requested.set()
        self.loop.wake()

    async def _stopper(self) -> None:
        await self._stop_requested.wait()
        drain = self.config.drain
        stopped = await self.loop.until(
            lambda: self.state.lifecycle is Lifecycle.STOPPED, drain.delay + 1.0
        )
        if not stopped:
            self.state.hurry()
            self.loop.wake()
        # Without a relay there is nobody to confirm: ExaBGP is gone or about to replay.
        confirming = self.reconciler.connected
        if confirming and not await self.reconciler.wait_converged(WITHDRAW_DEADLINE):
            log.warning("withdraw not confirmed in time: stopping anyway")
        if self._announced_at_stop and not self.hurry.is_set():
            await self.clock.wait(self.hurry, self.clock.now() + drain.withdraw_wait)
        await self.applier.clear(self.config.vips)
        self._finished.set()

    async def _signals(self, signals: SignalQueue) -> None:
        while True:
            signum = await signals.get()
            if signum == signal.SIGHUP:
                await self.control.reload()
            else:
                self.request_stop(signum)

    # -- ExaBGP

    def new_speaker(self, config: Config) -> Speaker:
        """A Speaker for `config`, its events tagged with it (raises SpeakerError)."""
        speaker: Speaker

        def on_event(event: SpeakerEvent) -> None:
            self._events.put_nowait((speaker, event))

        speaker = Speaker(
            config,
            on_event=on_event,
            backoff=self.seams.backoff,
            clock=self.clock.now,
            python=self.seams.python,
        )
        if self.speaker is not None:  # a reload replaces it: keep counting from its restarts
            self._earlier_restarts += self.speaker.restarts
        return speaker

    def exabgp_restarts(self) -> int:
        """ExaBGP restarts after an exit, over every Speaker of this daemon's life."""
        current = self.speaker.restarts if self.speaker is not None else 0
        return self._earlier_restarts + current

    async def _speaker_events(self) -> None:
        while True:
            speaker, event = await self._events.get()
            if speaker is not self.speaker:
                continue  # an earlier ExaBGP's last words, after a restart
            if isinstance(event, Connected):
                self.reconciler.replay(event.channel)
                self._connected_once = True
                self.loop.wake()
            elif isinstance(event, Disconnected):
                self.reconciler.disconnect()
                self.loop.wake()
            elif isinstance(event, Failed):
                raise SpeakerError(f"exabgp supervision failed: {event.error!r}") from event.error

    async def _beat(self) -> None:
        channel = self.speaker.channel if self.speaker is not None else None
        if channel is not None:
            with contextlib.suppress(ChannelClosed):
                await channel.heartbeat()
        if self.seams.watchdog is not None:
            self.seams.notify("WATCHDOG=1")

    def _sink_failed(self, failure: SinkFailure) -> None:
        self.sink_failures += 1

    # -- status

    def snapshot(self) -> StatusSnapshot:
        status = self.speaker.status() if self.speaker is not None else _NO_SPEAKER
        now, wall = self.clock.now(), self.seams.wall()
        return build_snapshot(
            state=self.state,
            applier=self.applier,
            reconciler=self.reconciler,
            speaker=status,
            config_error=self.config_error,
            to_wall=lambda since: wall - (now - since),
        )

    def _decided(self) -> None:
        if not self._ready and self._connected_once and self.state.last_probe is not None:
            self._ready = True
            log.info("ready", extra={"event": "ready"})
            self.seams.notify("READY=1")
        line = self._summary()
        if line != self._status_line:
            self._status_line = line
            self.seams.notify(f"STATUS={line}")

    def _summary(self) -> str:
        verdict = self.state.verdict()
        vips = {route.prefix for route in verdict.routes} & self.applier.announcing
        if vips:
            return f"announcing {len(vips)}/{len(self.config.vips)} VIP(s); {verdict.reason}"
        return f"not announcing: {verdict.reason}"

"""`announcer run`: the shell around the pure core, and the lives of the daemon's parts.

```
run ── status socket, VIPs left by a previous run removed, Speaker (ExaBGP) started,
 │     metrics endpoint (if `metrics.listen`: a taken address is logged, not fatal)
 └─ TaskGroup: bfd      the BFD sessions (`BfdService`, entered for the group's life): one
                        per neighbor with BFD, synced on every tick and reload; changes
                        come back as events
               core     one task: takes events off one bounded queue, feeds them to
                        `announcer.core.step` and carries out the effects (`Executor`);
                        effects that wait (a command's ack, a probe, the served check, the
                        interface, stopping ExaBGP) run as tasks of this group and come
                        back as events
               ticker   a Tick every pulse, and when the core's next probe is due (it
                        waits for the core to take each Tick: never a backlog of them)
               crashwatch  an idle connection to the apiserver (`announcer.crashwatch`),
                        once the probe's TLS files are usable, built again when they
                        change; its loss is a CrashTriggered event
               liveness `version` to ExaBGP when idle, at each tick; no answer in time:
                        ExabgpSilent
               vips     VIPs someone removed from the interface (checked at each tick),
                        reported as events
               signals  TERM/INT: StopRequested (twice: hurry); HUP: reload
finally: a clean stop already withdrew, waited and stopped ExaBGP (the core saw to it); any
         other end (a failed task, a failed start) stops ExaBGP first (closed sessions are
         the withdraw), waits `withdraw_wait`, then takes the VIPs off
```
Control requests (drain, undrain, reload) are events with a reply (`announcer.control`). A
crash exits 1, a stop 0.

Must not: decide anything (`announcer.core` does) nor write the core's state other than by
`step`; it only turns the world into events and effects into I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from announcer import sdnotify
from announcer.bfd import BfdService
from announcer.checker import ApiserverCheck
from announcer.clock import Clock, LoopClock
from announcer.config import Config, LoopbackConfig
from announcer.control import Control
from announcer.core import CoreState, initial, step
from announcer.core import events as ev
from announcer.crashwatch import CrashWatch, Trigger
from announcer.drainstore import DrainStore
from announcer.executor import Executor, VipTable
from announcer.liveness import watch_exabgp
from announcer.loopback import Loopback, LoopbackError
from announcer.neighbor_bfd import NeighborBfd
from announcer.served import Served, anyone_serves
from announcer.signals import SignalQueue
from announcer.snapshot import build_snapshot
from announcer.speaker import Backoff, Speaker, SpeakerError
from announcer.speakers import SpeakerFailure, Speakers
from announcer.status import StatusServer, StatusServerError
from announcer.status_protocol import StatusSnapshot

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are enabled
    from announcer.metrics import Metrics, MetricsServer

__all__ = ["ACK_TIMEOUT", "EXIT_FAILURE", "EXIT_OK", "QUEUE_SIZE", "Daemon", "Seams", "run_daemon"]

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
ACK_TIMEOUT: Final = 2.0
QUEUE_SIZE: Final = 1024


def _loopback(config: LoopbackConfig) -> VipTable:
    return Loopback(config.interface)


@dataclass(frozen=True, kw_only=True)
class Seams:
    """What tests replace: time, the interface, ExaBGP's pacing, systemd, the served check."""

    clock: Clock = field(default_factory=LoopClock)
    wall: Callable[[], float] = time.time
    vip_table: Callable[[LoopbackConfig], VipTable] = _loopback
    backoff: Backoff | None = None
    python: Path | None = None  # the relay's interpreter
    notify: Callable[[str], bool] = sdnotify.notify
    watchdog: float | None = None  # systemd's watchdog interval, if any
    serves: Callable[..., Awaitable[Served]] = (
        anyone_serves  # (addresses, port, *, connect_timeout)
    )


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
        drained = self.store.is_drained()
        self.core: CoreState = initial(config, drained=drained, now=self.clock.now())
        self.events: asyncio.Queue[ev.Event | SpeakerFailure] = asyncio.Queue(QUEUE_SIZE)
        self.vips = self.seams.vip_table(config.loopback) if config.loopback.manage else None
        self.checker = ApiserverCheck(config.apiserver, clock=self.clock.now)
        self.serves = self.seams.serves
        seams = self.seams
        self.speakers = Speakers(
            emit=self._emit, backoff=seams.backoff, clock=self.clock.now, python=seams.python
        )
        self.bfd = NeighborBfd(self._emit)
        self.metrics: Metrics | None = None
        self.control = Control(
            path=path,
            store=self.store,
            submit=self.submit,
            current=lambda: self.config,
            prepare=self._prepare_speaker,
            reloaded=self._reloaded,
        )
        self.status = StatusServer(
            config.status.socket,
            mode=config.status.mode,
            group=config.status.group,
            snapshot=self.snapshot,
            on_drain=self.control.drain,
            on_undrain=self.control.undrain,
        )
        self.metrics_server: MetricsServer | None = None
        if (listen := config.metrics.listen) is not None:
            from announcer.metrics import Metrics, MetricsServer

            self.metrics = Metrics(
                snapshot=self.snapshot,
                exabgp_restarts=self.speakers.restarts,
                bfd_drops=lambda: self.bfd.service.drops if self.bfd.service is not None else {},
            )
            self.metrics_server = MetricsServer(self.metrics, listen)
        self.pulse = self.pulse_of(config)
        self.executor = Executor(self, ack_timeout=ACK_TIMEOUT)
        self._clients = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[bool, str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._connected_once = False
        self._ready = False
        self._stopping = False
        self._status_line = ""
        self._wake = asyncio.Event()  # the core's next probe time changed
        self._ticked = asyncio.Event()  # the core took the ticker's Tick
        # Set on every Tick the core takes: the VIP and liveness checks ride on the tick's
        # wake-up instead of waking the loop on timers of their own.
        self._tick_vips = asyncio.Event()
        self._tick_liveness = asyncio.Event()
        self._watch: tuple[object, asyncio.Task[None]] | None = None  # (TLS context, task)
        self.crash_watch: CrashWatch | None = None
        self.probes = 0

    @property
    def config(self) -> Config:
        return self.core.config

    @property
    def config_error(self) -> str | None:
        return self.control.config_error

    def pulse_of(self, config: Config) -> float:
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
                code = await self._serve(signals)
            except (StatusServerError, SpeakerError, LoopbackError) as exc:
                log.critical("cannot start: %s", exc, extra={"event": "failed"})
            finally:
                await self._shutdown()
        log.info("stopped (exit %d)", code, extra={"event": "stopped", "code": code})
        return code

    async def _start(self) -> None:
        log.info("starting: %s", self.path, extra={"event": "start", "drained": self.core.drained})
        await self.status.start()
        if self.vips is not None:  # a daemon killed with SIGKILL left its VIPs behind
            for vip in self.config.vips:
                await self.vips.ensure_absent(vip)
        speaker = self.speakers.new(self.config)
        self.speakers.replace(speaker)
        await speaker.start()
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

    async def _serve(self, signals: SignalQueue) -> int:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self.spawn(self._ticker(), "ticker")
                self.spawn(self._watch_vips(), "vips")
                self.spawn(self._signals(signals), "signals")
                self.spawn(
                    watch_exabgp(
                        self.speakers, put=self.put, clock=self.clock, tick=self._tick_liveness
                    ),
                    "liveness",
                )
                async with BfdService(on_change=self.bfd.changed) as service:
                    self.bfd.service = service
                    try:
                        self.bfd.sync(self.config)
                        await self._run_core()
                        await self._end_tasks()
                    finally:
                        self.bfd.service = None
        except Exception as exc:  # the group's ExceptionGroup: any failed task fails closed
            log.critical(
                "a task failed: withdrawing and exiting: %s",
                _causes(exc),
                exc_info=exc,
                extra={"event": "failed"},
            )
            return EXIT_FAILURE
        finally:
            self._group = None
        return EXIT_OK

    async def _end_tasks(self) -> None:
        # A probe is let finish within its deadline: httpx cancelled mid-connect may leave
        # a socket for the garbage collector.
        probes = {task for task in self._tasks if task.get_name() == "probe"}
        if probes:
            await asyncio.wait(probes, timeout=2 * self.config.apiserver.timeout)
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, job: Coroutine[None, None, None], name: str) -> asyncio.Task[None]:
        """Run `job` as a task of the daemon's group (its failure fails the daemon)."""
        assert self._group is not None, "no task outside the daemon's group"
        task = self._group.create_task(job, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shutdown(self) -> None:
        """After a clean stop everything is done; otherwise fail closed: ExaBGP stopped first
        (closed sessions withdraw everything), `withdraw_wait`, then the VIPs off."""
        self.seams.notify("STOPPING=1")
        await self.speakers.stop_all()
        if self.vips is not None and not self.core.exited:
            if self.core.placed:
                await asyncio.sleep(self.config.drain.withdraw_wait)
            for vip in sorted({*self.config.vips, *self.core.placed}, key=str):
                with contextlib.suppress(LoopbackError):
                    await self.vips.ensure_absent(vip)
        for future in self._waiting.values():
            if not future.done():
                future.set_result((False, "the daemon stopped"))
        await self.status.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.checker.aclose()

    # -- the core

    async def _run_core(self) -> None:
        while not self.core.exited:
            event = await self.events.get()
            if isinstance(event, SpeakerFailure):
                raise SpeakerError(str(event))
            await self.feed(event)

    async def feed(self, event: ev.Event) -> None:
        """Step the core with `event` and carry out what it asks."""
        before = self.core
        self.core, effects = step(before, event, self.clock.now())
        if self.core.last_probe is not before.last_probe:  # a probe concluded
            self._probed(before)
            self._watch_crashes()
        if isinstance(event, ev.ExabgpConnected):
            self._connected_once = True
        elif isinstance(event, ev.Tick):
            self._ticked.set()
            self._tick_vips.set()
            self._tick_liveness.set()
        if (self.core.next_probe, self.core.probe_started) != (
            before.next_probe,
            before.probe_started,
        ):
            self._wake.set()
        for effect in effects:
            await self.executor.carry_out(effect)
        if isinstance(event, ev.Tick | ev.ReloadRequested):
            self.bfd.sync(self.config)
        self._decided()

    def submit(self, make: Callable[[int], ev.Event]) -> asyncio.Future[tuple[bool, str]]:
        """Queue a client's event now; the future gets the core's one answer."""
        client = next(self._clients)
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        try:
            self.events.put_nowait(make(client))
        except asyncio.QueueFull:
            future.set_result((False, "the daemon is busy; try again"))
        else:
            self._waiting[client] = future
        return future

    async def put(self, event: ev.Event) -> None:
        await self.events.put(event)

    def notify_watchdog(self) -> None:
        if self.seams.watchdog is not None:
            self.seams.notify("WATCHDOG=1")

    def answer(self, client: int, ok: bool, text: str) -> None:
        future = self._waiting.pop(client, None)
        if future is not None and not future.done():  # a client that left cancelled it
            future.set_result((ok, text))

    async def _ticker(self) -> None:
        beat_at = self.clock.now()
        while True:
            now = self.clock.now()
            if now >= min(beat_at, self._probe_due()):
                self._ticked.clear()
                await self.events.put(ev.Tick())
                await self._ticked.wait()
                beat_at = now + self.pulse
                continue
            self._wake.clear()
            await self.clock.wait(self._wake, min(beat_at, self._probe_due()))

    def _probe_due(self) -> float:
        core = self.core
        return core.next_probe if core.probe_started is None else math.inf

    def _watch_crashes(self) -> None:
        """(Re)start the crash watch when the probe's TLS context is new."""
        context = self.checker.ssl_context
        if self._watch is not None:
            if self._watch[0] is context:
                return
            self._watch[1].cancel()
            self._watch = None
        if context is None or self._group is None:
            return
        a = self.config.apiserver
        watch = CrashWatch(
            url=a.url, server_name=a.server_name, ssl_context=context, on_trigger=self._crashed
        )
        self.crash_watch = watch
        self._watch = (context, self.spawn(watch.run(), "crashwatch"))

    def _crashed(self, trigger: Trigger) -> None:
        self._emit(ev.CrashTriggered(trigger.reason))

    async def _watch_vips(self) -> None:
        """At every tick (at least every `apiserver.interval`), the VIPs someone removed."""
        while self.vips is not None:
            await self.clock.wait(
                self._tick_vips, self.clock.now() + self.config.apiserver.interval
            )
            self._tick_vips.clear()
            core = self.core
            on = sorted(core.placed - core.adding - core.removing, key=str)
            try:
                missing = await self.vips.missing(on) if on else []
            except LoopbackError as exc:
                log.error("cannot check the VIPs on the interface: %s", exc)
                continue
            for vip in missing:
                await self.events.put(ev.VipObserved(vip, False))

    async def _signals(self, signals: SignalQueue) -> None:
        while True:
            signum = await signals.get()
            if signum == signal.SIGHUP:
                self.spawn(self.control.reload(), "reload")
                continue
            name = signal.Signals(signum).name
            if self._stopping:
                log.warning("%s again: withdrawing at once", name, extra={"event": "stop"})
            else:
                self._stopping = True
                log.info("%s: stopping", name, extra={"event": "stop", "signal": name})
                self.seams.notify("STOPPING=1")
            await self.events.put(ev.StopRequested(name))

    # -- ExaBGP

    @property
    def speaker(self) -> Speaker | None:
        return self.speakers.current

    def _prepare_speaker(self, config: Config) -> None:
        self.speakers.next = self.speakers.new(config)

    def _emit(self, item: ev.Event | SpeakerFailure) -> None:
        try:
            self.events.put_nowait(item)
        except asyncio.QueueFull:
            self.spawn(self.events.put(item), "speaker-event")

    def _reloaded(self, config: Config) -> None:
        self.checker.configure(config.apiserver)
        self.pulse = self.pulse_of(config)

    # -- status

    def snapshot(self) -> StatusSnapshot:
        status = self.speakers.status()
        now, wall = self.clock.now(), self.seams.wall()
        return build_snapshot(
            state=self.core,
            speaker=status,
            config_error=self.config_error,
            to_wall=lambda since: wall - (now - since),
        )

    def _probed(self, before: CoreState) -> None:
        self.probes += 1
        after = self.core.transitions
        transition = after[-1] if after and after != before.transitions else None
        result = self.core.last_probe
        if self.metrics is not None and result is not None:
            self.metrics.record_probe(result, transition)

    def _decided(self) -> None:
        if not self._ready and self._connected_once and self.core.last_probe is not None:
            self._ready = True
            log.info("ready", extra={"event": "ready"})
            self.seams.notify("READY=1")
        line = self._summary()
        if line != self._status_line:
            self._status_line = line
            self.seams.notify(f"STATUS={line}")

    def _summary(self) -> str:
        vips = self.core.announcing
        if vips:
            return f"announcing {len(vips)}/{len(self.config.vips)} VIP(s); {self.core.reason()}"
        return f"not announcing: {self.core.reason()}"


def _causes(error: BaseException) -> str:
    """What failed, in words: the leaves of an exception group (a journal line may carry no
    traceback, so the cause must be in the message itself)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_causes(inner) for inner in error.exceptions)
    return str(error) or type(error).__name__

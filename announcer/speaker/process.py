"""`Speaker`: ExaBGP supervised, its relay's socket, and the sessions it reports.

The speaker renders exabgp.conf, listens on the relay's unix socket, runs ExaBGP (restarting
it with exponential backoff when it exits) and accepts one relay connection at a time: the
relay must be a child of the ExaBGP it started. Each connection becomes a `Channel`; the owner
learns through `on_event` when one appears (`Connected`: replay everything) or goes
(`Disconnected`), and when a BGP session changes (`SessionChanged`).

Every task it starts has an owner that awaits it: the supervisor is awaited by `stop()`, the
output drains and the stopper live in a task group of each ExaBGP run, and relay connections
(handlers the unix server does not await) are awaited by `stop()`, cancelled past the grace
period; none is pending when `stop()` returns.

Must not: decide what to announce, send commands itself or send heartbeats (the decision loop
does: a heartbeat proves that loop is alive, not just this task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from announcer.config import Config
from announcer.speaker import launch, peer, runtime
from announcer.speaker.channel import MAX_LINE, Channel
from announcer.speaker.errors import ExabgpCannotStart
from announcer.speaker.events import Event, IPAddress, SessionEvent, Shutdown
from announcer.speaker.render import RuntimePaths, relay_python, render_environment, render_exabgp
from announcer.speaker.session import (
    Connected,
    Disconnected,
    Exited,
    Failed,
    Session,
    SessionChanged,
    Sessions,
    SpeakerEvent,
    SpeakerStatus,
)

log = logging.getLogger(__name__)

_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DRAIN_GRACE: Final = 2.0
SUPERVISOR_TASK: Final = "exabgp-supervisor"


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Delays between ExaBGP restarts: `initial` doubling up to `maximum`, back to none after
    a run of at least `stable` seconds. A run of 10 s means ExaBGP started, read its config
    and kept its sessions: its next exit is a new incident, not part of a crash loop, and
    waiting up to `maximum` for it would keep a healthy node out of service for no reason.
    After `give_up` identical start failures in a row (ExaBGP could not even be executed)
    the speaker fails with `ExabgpCannotStart`, naming the cause."""

    initial: float = 0.5
    maximum: float = 30.0
    stable: float = 10.0
    give_up: int = 5


class _Exited(Exception):
    def __init__(self, reason: str, ran_for: float) -> None:
        super().__init__(reason)
        self.ran_for = ran_for


class Speaker:
    """ExaBGP and its relay, for the life of the daemon: `await start()`, then `await stop()`."""

    def __init__(
        self,
        config: Config,
        *,
        on_event: Callable[[SpeakerEvent], None],
        backoff: Backoff | None = None,
        grace: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        python: Path | None = None,
    ) -> None:
        """`on_event` is called on the event loop for every `SpeakerEvent` and must not block
        (hand the event to a queue or set a flag). `backoff` paces restarts, `grace` is how
        long ExaBGP gets between SIGTERM and SIGKILL; `clock` (monotonic) and `sleep` (the
        backoff's waits, by default cut short by `stop()`) are seams for tests, and `python`
        is the relay's interpreter (default: Debian's /usr/bin/python3)."""
        self._config = config
        self._on_event = on_event
        self._backoff = backoff or Backoff()
        self._grace = grace
        self._clock = clock
        self._sleep = sleep or self._sleep_unless_stopping
        self._python = python or relay_python()
        self._paths = RuntimePaths.of(config)
        self._account = runtime.exabgp_account(config.exabgp.user)
        self._stopping = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._connections: set[asyncio.Task[object]] = set()
        self._starts = 0
        self._start_failures: tuple[str, int] = ("", 0)  # the last start error, how often
        self._sessions = Sessions((n.address for n in config.bgp.neighbors), now=clock())

    @property
    def channel(self) -> Channel | None:
        """The current relay connection's channel, if one is connected and open."""
        return self._channel if self._channel is not None and not self._channel.closed else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def restarts(self) -> int:
        """How many times ExaBGP was started again after the first time."""
        return max(self._starts - 1, 0)

    @property
    def sessions(self) -> Mapping[IPAddress, Session]:
        return self._sessions.view()

    def status(self) -> SpeakerStatus:
        return SpeakerStatus(
            pid=self.pid,
            restarts=self.restarts,
            connected=self.channel is not None,
            sessions=tuple(self._sessions.view().values()),
        )

    def kill(self) -> None:
        """SIGKILL the running ExaBGP (its sessions close at once); it is restarted as usual."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def start(self) -> None:
        """Check the configuration renders, prepare the files and socket, start ExaBGP."""
        render_exabgp(self._config, redact=False, python=self._python)  # fail now, not later
        runtime.prepare(self._paths, self._account)
        self._server = await asyncio.start_unix_server(
            self._accept, path=self._paths.socket, limit=MAX_LINE
        )
        runtime.own_socket(self._paths.socket, self._account)
        self._supervisor = asyncio.create_task(self._supervise(), name=SUPERVISOR_TASK)
        self._supervisor.add_done_callback(self._supervisor_ended)

    async def stop(self) -> None:
        """Stop ExaBGP (terminate, grace period, kill) and wait for its relay to go."""
        self._stopping.set()
        if self._supervisor is not None:
            await asyncio.wait({self._supervisor})  # unlike `await`, quiet if it was cancelled
        if self._connections:  # the server does not await its handlers: they are ours
            await settle(set(self._connections), grace=self._grace)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._paths.socket.unlink(missing_ok=True)

    # ExaBGP, restarted with backoff

    async def _supervise(self) -> None:
        while not self._stopping.is_set():
            retrying = AsyncRetrying(
                retry=retry_if_exception(self._short_run),
                wait=wait_exponential(multiplier=self._backoff.initial, max=self._backoff.maximum),
                sleep=self._sleep,
                before_sleep=self._log_backoff,
                reraise=True,
            )
            # A stable run ends `retrying` by re-raising: the next loop starts a fresh backoff.
            with contextlib.suppress(_Exited):
                async for attempt in retrying:
                    with attempt:
                        await self._run_once()

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            log.warning("exabgp supervision was cancelled; exabgp is stopped")
        elif (error := task.exception()) is not None:
            log.critical("exabgp supervision failed: %r", error, exc_info=error)
            self._emit(Failed(error))

    def _short_run(self, error: BaseException) -> bool:
        return isinstance(error, _Exited) and error.ran_for < self._backoff.stable

    def _log_backoff(self, state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "restarting exabgp in %.1f s",
            delay,
            extra={"event": "exabgp_restart", "restart_delay": delay},
        )

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_once(self) -> None:
        if self._stopping.is_set():
            return
        self._starts += 1
        started = self._clock()
        try:
            process = await self._launch()
        except Exception as error:
            log.error("cannot start exabgp: %s", error)
            self._count_start_failure(str(error))
            raise _Exited(str(error), 0.0) from error
        self._start_failures = ("", 0)
        self._process = process
        try:
            reason = await self._wait(process)
        finally:
            self._process = None
        self._all_down(reason)
        if not self._stopping.is_set():
            log.error("%s", reason, extra={"event": "exabgp_exit", "exabgp_pid": process.pid})
            raise _Exited(reason, self._clock() - started)
        log.info("%s", reason, extra={"event": "exabgp_exit", "exabgp_pid": process.pid})

    def _count_start_failure(self, reason: str) -> None:
        last, count = self._start_failures
        count = count + 1 if reason == last else 1
        self._start_failures = (reason, count)
        if count >= self._backoff.give_up:
            raise ExabgpCannotStart(f"exabgp cannot be started ({count} times in a row): {reason}")

    async def _launch(self) -> asyncio.subprocess.Process:
        # Rendered at every start, so a changed password file takes effect on a restart.
        text = render_exabgp(self._config, redact=False, python=self._python)
        runtime.write_file(
            self._paths.config, text.encode(), account=self._account, mode=runtime.CONFIG_MODE
        )
        env = {"PATH": _PATH, "LANG": "C.UTF-8", **render_environment(self._config)}
        argv = [str(self._config.exabgp.binary), "server", str(self._paths.config)]
        process = await launch.launch(
            argv, env=env, cwd=self._paths.directory, account=self._account
        )
        log.info(
            "started exabgp",
            extra={"event": "exabgp_start", "exabgp_pid": process.pid, "restarts": self.restarts},
        )
        return process

    async def _wait(self, process: asyncio.subprocess.Process) -> str:
        """Drain ExaBGP's output until it exits, or stop it when asked; why it ended. Every
        task started here (the output drains, the stopper) has ended when this returns."""
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.TaskGroup() as tasks:
            drains = [
                tasks.create_task(launch.drain(stream, pid=process.pid), name="exabgp-output")
                for stream in (process.stdout, process.stderr)
            ]
            stopper = tasks.create_task(self._stop_when_asked(process), name="exabgp-stopper")
            try:
                code = await process.wait()
                self._emit(Exited(f"exabgp ended with code {code}"))
            finally:
                stopper.cancel()
                if process.returncode is None:  # cancelled: never leave ExaBGP running unowned
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                # The relay shares ExaBGP's stderr; it dies with ExaBGP, so EOF follows shortly.
                await settle(drains, grace=_DRAIN_GRACE)
        return (
            f"exabgp exited with code {code}" if code >= 0 else f"exabgp killed by signal {-code}"
        )

    async def _stop_when_asked(self, process: asyncio.subprocess.Process) -> None:
        await self._stopping.wait()
        await self._terminate(process)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self._grace)
        except TimeoutError:
            log.warning("exabgp ignored SIGTERM for %.1f s: killing it", self._grace)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # The relay's connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        problem = self._refusal(writer)
        if problem is not None:
            log.warning("refused a connection on the relay socket: %s", problem)
            return
        channel = Channel(reader, writer, on_event=self._exabgp_event)
        previous, self._channel = self._channel, channel
        if previous is not None:
            previous.close("replaced by a new relay connection")
        log.info("relay connected", extra={"exabgp_pid": self.pid})
        self._emit(Connected(channel))
        await channel.run()
        if self._channel is channel:
            self._channel = None
            level = logging.INFO if self._stopping.is_set() else logging.WARNING
            log.log(level, "relay disconnected")
            self._emit(Disconnected("the relay disconnected"))

    def _refusal(self, writer: asyncio.StreamWriter) -> str | None:
        if self._stopping.is_set():
            return "stopping"
        return peer.relay_refusal(writer.get_extra_info("socket"), self.pid)

    # Sessions

    def _exabgp_event(self, event: Event) -> None:
        if isinstance(event, Shutdown):
            self._all_down("exabgp is shutting down")
        elif isinstance(event, SessionEvent):
            session = self._sessions.apply(event, now=self._clock())
            if session is None:
                log.warning("exabgp reported unknown neighbor %s", event.peer)
            else:
                self._changed(session)

    def _all_down(self, reason: str) -> None:
        for session in self._sessions.all_down(reason, now=self._clock()):
            self._changed(session)

    def _changed(self, session: Session) -> None:
        log.info(
            "bgp session %s %s%s",
            session.peer,
            session.state.value,
            f" ({session.reason})" if session.reason else "",
            extra={
                "event": "session",
                "neighbor": str(session.peer),
                "session_state": session.state.value,
            },
        )
        self._emit(SessionChanged(session))

    def _emit(self, event: SpeakerEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("speaker event listener failed on %r", event)


async def settle(tasks: Collection[asyncio.Task[Any]], *, grace: float) -> None:
    """Let `tasks` end within `grace` seconds, cancel the rest, and wait until all have ended:
    whoever calls this owns them, and none outlives it."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)

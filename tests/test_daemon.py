"""The whole daemon in-process: the lab's fake apiserver over real TLS, a fake ExaBGP that
runs the real relay over the real socket (tests/speaker/fake_exabgp.py), the real status
socket and signals; only the interface is a fake (no netlink on the test host)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from announcer.config import load_config
from announcer.config.model import VipNetwork
from announcer.daemon import EXIT_FAILURE, EXIT_OK, Daemon, Seams
from announcer.drainstore import DrainStore
from announcer.health import Health, ProbeResult
from announcer.lab.apiserver.credentials import server_tls_context
from announcer.lab.apiserver.listen import ListenAddress
from announcer.lab.apiserver.server import FakeApiserver
from announcer.lab.apiserver.states import State
from announcer.lab.pki import LabPki
from announcer.lifecycle import Lifecycle
from announcer.routes import GRACEFUL_SHUTDOWN_COMMUNITY
from announcer.speaker import Backoff
from announcer.status_client import query, snapshot_from_json
from announcer.status_protocol import JSONObject, StatusSnapshot

HERE = Path(__file__).parent
DEADLINE = 10.0
EXABGP_USER = "nobody"  # exists on Debian; used when the tests run as root
VIPS = ["198.51.100.10/32", "2001:db8:100::10/128"]


class FakeVips:
    def __init__(self) -> None:
        self.on: set[VipNetwork] = set()
        self.crash = False

    async def ensure_present(self, vip: VipNetwork) -> bool:
        added = vip not in self.on
        self.on.add(vip)
        return added

    async def ensure_absent(self, vip: VipNetwork) -> bool:
        removed = vip in self.on
        self.on.discard(vip)
        return removed

    async def missing(self, vips: Iterable[VipNetwork]) -> list[VipNetwork]:
        if self.crash:
            raise RuntimeError("a bug in the interface code")
        return [vip for vip in vips if vip not in self.on]


@dataclass
class World:
    base: Path
    pki: LabPki
    apiserver: FakeApiserver
    vips: FakeVips = field(default_factory=FakeVips)
    notes: list[str] = field(default_factory=list)

    @property
    def config_file(self) -> Path:
        return self.base / "config.yaml"

    @property
    def socket(self) -> Path:
        return self.base / "status.sock"

    def document(self, **sections: dict[str, object]) -> dict[str, object]:
        port = self.apiserver.addresses[0].port
        document: dict[str, object] = {
            "apiserver": {
                "url": f"https://127.0.0.1:{port}",
                "ca_file": str(self.pki.ca_cert),
                "interval": 0.1,
                "timeout": 0.08,
                "rise": 2,
                "fall": 1,
                "min_healthy": 0,
            },
            "vips": VIPS,
            "bgp": {
                "router_id": "192.0.2.2",
                "local_as": 65100,
                "neighbors": [
                    {"address": "192.0.2.1", "peer_as": 65000},
                    {"address": "2001:db8:1::1", "peer_as": 65000},
                ],
            },
            "drain": {"delay": 0.5, "withdraw_wait": 0.2},
            "state_dir": str(self.base / "state"),
            "status": {"socket": str(self.socket)},
            "exabgp": {"user": EXABGP_USER, "binary": str(self.base / "fake-exabgp")},
        }
        for name, section in sections.items():
            old = document.get(name)
            document[name] = {**old, **section} if isinstance(old, dict) else section
        return document

    def write(self, **sections: dict[str, object]) -> None:
        self.config_file.write_text(yaml.safe_dump(self.document(**sections)))

    def daemon(self) -> Daemon:
        seams = Seams(
            vip_table=lambda _: self.vips,
            backoff=Backoff(initial=0.01, maximum=0.05),
            notify=self.note,
        )
        return Daemon(self.config_file, load_config(self.config_file), seams=seams)

    def note(self, message: str) -> bool:
        self.notes.append(message)
        return True

    async def ask(self, op: str, **fields: bool) -> JSONObject:
        return await asyncio.to_thread(query, self.socket, {"op": op, **fields}, timeout=10.0)

    async def status(self) -> StatusSnapshot:
        answer = await self.ask("status")
        snapshot = answer["status"]
        assert isinstance(snapshot, dict)
        return snapshot_from_json(snapshot)


async def until(predicate: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE} s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def world_of(base: Path, pki: LabPki) -> AsyncIterator[World]:
    node = pki.nodes["cp1"]
    tls = server_tls_context(cert=node.cert, key=node.key, client_ca=pki.ca_cert)
    listen = [ListenAddress.parse("127.0.0.1:0")]
    async with FakeApiserver(node="cp1", tls=tls, listen=listen) as apiserver:
        world = World(base, pki, apiserver)
        world.write()
        yield world


@asynccontextmanager
async def running(world: World, daemon: Daemon | None = None) -> AsyncIterator[Daemon]:
    """The daemon running; on the way out it gets SIGTERM (if still running) and must exit 0."""
    daemon = daemon or world.daemon()
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: task.done() or world.socket.exists(), "status socket")
        yield daemon
    finally:
        if not task.done():
            os.kill(os.getpid(), signal.SIGTERM)
        code = await asyncio.wait_for(task, DEADLINE)
        assert code == EXIT_OK


async def announcing(world: World) -> tuple[Daemon, asyncio.Task[int]]:
    """A daemon started and announcing, left to the test to stop (and to await)."""
    daemon = world.daemon()
    task = asyncio.create_task(daemon.run())
    await until(lambda: task.done() or world.socket.exists(), "status socket")
    await until(lambda: announced(world), "announced")
    return daemon, task


async def announced(world: World) -> bool:
    return (await world.status()).announced


def test_announces_once_ready_and_shows_why(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: announced(world), "announced")
            snapshot = await world.status()
            assert (snapshot.health, snapshot.lifecycle) == (Health.UP, Lifecycle.RUNNING)
            assert [(v.prefix, v.announced) for v in snapshot.vips] == [
                (VIPS[0], True),
                (VIPS[1], True),
            ]
            assert [n.address for n in snapshot.neighbors] == ["192.0.2.1", "2001:db8:1::1"]
            assert daemon.speaker is not None
            assert (snapshot.exabgp.pid, snapshot.exabgp.restarts) == (daemon.speaker.pid, 0)
            assert snapshot.last_probe is not None and snapshot.last_probe.ok
            assert [t.new for t in snapshot.transitions] == ["rising", "up"]
            assert {str(vip) for vip in world.vips.on} == set(VIPS)
            assert "READY=1" in world.notes
            assert any(n.startswith("STATUS=announcing 2/2") for n in world.notes)

    asyncio.run(test())


def test_a_failing_apiserver_is_withdrawn_and_the_vips_come_off(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world):
            await until(lambda: announced(world), "announced")
            await world.apiserver.set_state(State.ETCD_DOWN)
            await until(lambda: world.vips.on == set(), "VIPs off the interface")
            snapshot = await world.status()
            assert (snapshot.announced, snapshot.health) == (False, Health.DOWN)
            assert all("etcd" in vip.reason for vip in snapshot.vips)
            await world.apiserver.set_state(State.READY)
            await until(lambda: announced(world), "announced again")

    asyncio.run(test())


def test_drain_wait_then_undrain_and_the_flag_is_persisted(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: announced(world), "announced")
            started = time.monotonic()
            answer = await world.ask("drain", wait=True)
            took = time.monotonic() - started
            assert answer == {"ok": True, "message": "drained: routes withdrawn"}
            assert 0.5 <= took < 2.5  # drain.delay of graceful shutdown first
            assert not daemon.core.installed
            assert DrainStore(base / "state").is_drained()
            snapshot = await world.status()
            assert (snapshot.drained, snapshot.lifecycle) == (True, Lifecycle.DRAINED)
            answer = await world.ask("undrain")
            assert answer["ok"] is True
            assert not DrainStore(base / "state").is_drained()
            await until(lambda: announced(world), "announced after undrain")

    asyncio.run(test())


def test_drain_is_graceful_first(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: announced(world), "announced")
            answer = await world.ask("drain")
            assert str(answer["message"]).startswith("draining")
            await until(
                lambda: all(
                    GRACEFUL_SHUTDOWN_COMMUNITY in r.communities and r.as_path == (65100,) * 4
                    for r in daemon.core.installed.values()
                ),
                "graceful routes installed",
            )
            assert len(daemon.core.installed.values()) == 2
            await until(lambda: not daemon.core.installed, "withdrawn")

    asyncio.run(test())


def test_started_with_the_drain_flag_it_stays_drained(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            DrainStore(base / "state").set(True)
            async with running(world) as daemon:
                await until(
                    lambda: daemon.core.last_probe is not None and daemon.probes >= 5,
                    "healthy for a while",
                )
                snapshot = await world.status()
                assert (snapshot.health, snapshot.lifecycle) == (Health.UP, Lifecycle.DRAINED)
                assert snapshot.announced is False
                assert not daemon.core.desired()
                assert world.vips.on == set()

    asyncio.run(test())


def test_sigterm_is_two_phase_and_exits_0_in_time(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            daemon, task = await announcing(world)
            started = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            await until(
                lambda: (
                    daemon.core.lifecycle is Lifecycle.STOPPING
                    and all(
                        GRACEFUL_SHUTDOWN_COMMUNITY in r.communities
                        for r in daemon.core.installed.values()
                    )
                ),
                "graceful phase",
            )
            assert daemon.core.installed.values()
            code = await asyncio.wait_for(task, DEADLINE)
            took = time.monotonic() - started
            assert code == EXIT_OK
            assert 0.5 <= took <= 0.5 + 2.0  # drain.delay, then withdraw and stop
            assert not daemon.core.installed
            assert world.vips.on == set()
            assert daemon.speaker is not None and daemon.speaker.pid is None
            assert not world.socket.exists()
            assert "STOPPING=1" in world.notes

    asyncio.run(test())


def test_a_second_sigterm_withdraws_at_once(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(drain={"delay": 30.0, "withdraw_wait": 30.0})
            daemon, task = await announcing(world)
            started = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            await until(lambda: daemon.core.lifecycle is Lifecycle.STOPPING, "stopping")
            os.kill(os.getpid(), signal.SIGINT)
            code = await asyncio.wait_for(task, DEADLINE)
            assert code == EXIT_OK
            assert time.monotonic() - started < 3.0
            assert not daemon.core.installed
            assert world.vips.on == set()

    asyncio.run(test())


def test_sighup_keeps_the_running_config_on_error_and_applies_a_good_one(
    base: Path, pki: LabPki
) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: announced(world), "announced")
            world.config_file.write_text("vips: [10.0.0.0/8]\n")
            os.kill(os.getpid(), signal.SIGHUP)
            await until(lambda: daemon.config_error is not None, "config_error")
            snapshot = await world.status()
            assert snapshot.announced
            assert "vips[0]: '10.0.0.0/8' is not a /32 or /128" in str(snapshot.config_error)
            world.write(announce={"med": 50})
            os.kill(os.getpid(), signal.SIGHUP)
            await until(lambda: daemon.config_error is None, "config_error cleared")
            await until(
                lambda: {r.med for r in daemon.core.installed.values()} == {50},
                "routes with med 50",
            )
            assert (await world.status()).config_error is None

    asyncio.run(test())


def test_sighup_with_new_bgp_settings_restarts_exabgp(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: announced(world), "announced")
            assert daemon.speaker is not None
            old = daemon.speaker.pid
            world.write(bgp={"hold_time": 3})
            os.kill(os.getpid(), signal.SIGHUP)
            await until(
                lambda: daemon.speaker is not None and daemon.speaker.pid not in (None, old),
                "a new exabgp",
            )
            await until(lambda: announced(world), "announced through the new exabgp")
            assert daemon.config.bgp.hold_time == 3

    asyncio.run(test())


def test_a_crashing_task_withdraws_and_exits_1(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            daemon, task = await announcing(world)
            world.vips.crash = True
            code = await asyncio.wait_for(task, DEADLINE)
            assert code == EXIT_FAILURE
            # Fail closed: ExaBGP stopped (its sessions closed: withdrawn), then the VIPs off.
            assert world.vips.on == set()
            assert daemon.speaker is not None and daemon.speaker.pid is None

    asyncio.run(test())


def test_a_dead_exabgp_supervisor_fails_the_daemon_closed(base: Path, pki: LabPki) -> None:
    """Guarantee 3: if nothing can restart ExaBGP any more, the daemon must not carry on as if
    it could: it withdraws what is left and exits 1 (systemd restarts it)."""

    async def test() -> None:
        async with world_of(base, pki) as world:
            daemon, task = await announcing(world)
            speaker = daemon.speaker
            assert speaker is not None and speaker.pid is not None

            async def broken() -> None:
                raise RuntimeError("supervision bug")

            speaker._run_once = broken  # type: ignore[method-assign]  # the next (re)start fails
            os.kill(speaker.pid, signal.SIGKILL)
            code = await asyncio.wait_for(task, DEADLINE)
            assert code == EXIT_FAILURE
            assert world.vips.on == set()

    asyncio.run(test())


def test_a_missing_ca_fails_probes_until_it_appears(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            ca = base / "pki" / "ca.crt"
            world.write(apiserver={"ca_file": str(ca)})
            async with running(world) as daemon:
                await until(lambda: daemon.probes >= 3, "probes")
                snapshot = await world.status()
                assert snapshot.announced is False
                assert snapshot.last_probe is not None
                assert snapshot.last_probe.reason == f"no CA file {ca} (yet)"
                ca.parent.mkdir()
                shutil.copyfile(pki.ca_cert, ca)
                await until(lambda: announced(world), "announced once the CA is there")

    asyncio.run(test())


def test_the_watchdog_is_fed_by_the_decision_loop(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            seams = Seams(vip_table=lambda _: world.vips, notify=world.note, watchdog=0.2)
            daemon = Daemon(world.config_file, load_config(world.config_file), seams=seams)
            assert daemon.pulse == pytest.approx(0.05)  # a quarter of the watchdog
            async with running(world, daemon):
                await until(lambda: world.notes.count("WATCHDOG=1") >= 10, "watchdog pings")

    asyncio.run(test())


def test_a_probe_stuck_past_its_deadline_starves_the_watchdog_and_the_relay(
    base: Path, pki: LabPki
) -> None:
    """The beat proves the loop decides: a probe that never returns (stuck outside its own
    deadline) must not keep systemd's watchdog or the relay's heartbeat fed, so the relay
    kills ExaBGP. Only the probe is replaced; ExaBGP, the relay and the socket are real."""

    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(exabgp={"heartbeat_timeout": 1.0})
            seams = Seams(vip_table=lambda _: world.vips, notify=world.note, watchdog=0.2)
            daemon = Daemon(world.config_file, load_config(world.config_file), seams=seams)
            async with running(world, daemon):
                await until(lambda: announced(world), "announced")
                speaker = daemon.speaker
                assert speaker is not None
                stuck = asyncio.Event()

                async def hangs() -> ProbeResult:
                    stuck.set()
                    await asyncio.Event().wait()
                    raise AssertionError("unreachable")

                daemon.checker.probe = hangs  # type: ignore[method-assign]
                await until(stuck.is_set, "a probe stuck")
                await until(lambda: speaker.restarts >= 1, "the relay killed exabgp")
                fed = world.notes.count("WATCHDOG=1")
                await asyncio.sleep(0.5)  # a measurement window, not a synchronisation
                assert world.notes.count("WATCHDOG=1") == fed, "watchdog fed by a stuck loop"

    asyncio.run(test())


def test_announcer_run_as_a_process_logs_json_and_stops_on_sigterm(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(loopback={"manage": False})
            argv = [sys.executable, "-m", "announcer", "run", "--config", str(world.config_file)]
            daemon = await asyncio.create_subprocess_exec(
                *argv, "--log-format", "json", stderr=asyncio.subprocess.PIPE
            )
            try:
                await until(lambda: world.socket.exists() and announced(world), "announced")
                status = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "announcer", "status", "--socket", str(world.socket),
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await status.communicate()
                assert status.returncode == 0
                assert out.startswith(b"ANNOUNCING: 2 of 2 VIP(s) announced")
                daemon.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(daemon.communicate(), DEADLINE)
            finally:
                if daemon.returncode is None:
                    daemon.kill()
                    await daemon.wait()
            assert daemon.returncode == EXIT_OK
            entries = [json.loads(line) for line in err.decode().splitlines()]
            events = [entry.get("event") for entry in entries]
            for event in ("start", "transition", "announce", "ready", "stop", "withdraw"):
                assert event in events
            assert events[-1] == "stopped"

    asyncio.run(test())


def _idle_status_clients(path: Path, count: int) -> list[socket.socket]:
    """Connections to the status socket that never send a request (evictable, then cut)."""
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        clients.append(client)
    return clients


def _apiserver_side(task: asyncio.Task[object]) -> bool:
    """A task of the test's fake apiserver (serving a connection the daemon just closed)."""
    return str(getattr(task.get_coro(), "__qualname__", "")).startswith("FakeApiserver.")


def test_no_task_outlives_the_daemon(base: Path, pki: LabPki) -> None:
    """Structured concurrency: every task the daemon started (ExaBGP's supervision, its output
    drains, relay connections, status clients, including evicted ones) is awaited by its owner
    before `run()` returns; none is left pending for the loop's end to cancel, and no socket
    is left for the garbage collector (filterwarnings=error turns its ResourceWarning into a
    failure)."""

    async def test() -> None:
        async with world_of(base, pki) as world:
            before = asyncio.all_tasks()
            daemon, task = await announcing(world)
            clients = _idle_status_clients(world.socket, 12)  # more than one uid may hold
            try:
                await until(lambda: daemon.status.connections >= 8, "idle status clients")
                assert daemon.speaker is not None
                os.kill(os.getpid(), signal.SIGTERM)
                assert await asyncio.wait_for(task, DEADLINE) == EXIT_OK
            finally:
                for client in clients:
                    client.close()
            gc.collect()  # an unclosed socket's ResourceWarning surfaces now, as an error
            stray = asyncio.all_tasks() - before - {asyncio.current_task()}
            stray = {task for task in stray if not _apiserver_side(task)}
            assert not stray, f"tasks left pending by the daemon: {stray}"

    asyncio.run(test())

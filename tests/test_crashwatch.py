"""The crash watch against the fake apiserver over real TLS on loopback (lab PKI)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from announcer.crashwatch import CrashWatch, Trigger
from announcer.lab.apiserver import FakeApiserver, ListenAddress, State
from announcer.lab.apiserver.credentials import server_tls_context
from announcer.lab.pki import LabPki, write_lab_pki
from announcer.probe import tls_context

NODE = "cp1"
DEADLINE = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("lab"), {NODE: ["198.51.100.10/32"]})


def serving_context(pki: LabPki) -> ssl.SSLContext:
    node = pki.nodes[NODE]
    return server_tls_context(cert=node.cert, key=node.key, client_ca=pki.ca_cert)


async def until(predicate: Callable[[], bool]) -> None:
    """Poll `predicate` on the loop, failing the test after DEADLINE seconds."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {DEADLINE} s")
        await asyncio.sleep(0.005)


@dataclass
class Watched:
    watch: CrashWatch
    triggers: asyncio.Queue[Trigger] = field(default_factory=asyncio.Queue)

    async def trigger(self) -> Trigger:
        async with asyncio.timeout(DEADLINE):
            return await self.triggers.get()


@asynccontextmanager
async def watching(pki: LabPki, port: int, *, retry: float = 0.05) -> AsyncIterator[Watched]:
    queue: asyncio.Queue[Trigger] = asyncio.Queue()
    watch = CrashWatch(
        url=f"https://127.0.0.1:{port}",
        server_name="kubernetes",
        ssl_context=tls_context(ca_file=pki.ca_cert),
        on_trigger=queue.put_nowait,
        retry=retry,
    )
    task = asyncio.create_task(watch.run())
    try:
        yield Watched(watch, queue)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def fake_apiserver(pki: LabPki) -> AsyncIterator[FakeApiserver]:
    apiserver = FakeApiserver(
        node=NODE, tls=serving_context(pki), listen=[ListenAddress("127.0.0.1", 0)]
    )
    async with apiserver:
        yield apiserver


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_crash_triggers_once_and_the_watch_rearms_when_it_is_back(pki: LabPki) -> None:
    async def scenario() -> None:
        async with fake_apiserver(pki) as apiserver:
            port = apiserver.addresses[0].port
            async with watching(pki, port) as watched:
                await until(lambda: watched.watch.connected)
                await apiserver.set_state(State.CRASH)
                trigger = await watched.trigger()
                assert trigger.reason in ("refused", "reset")
                assert trigger.lost_at <= trigger.at
                # Retries while it stays away are silent.
                connects = watched.watch.connects
                await apiserver.set_state(State.READY)
                await until(lambda: watched.watch.connects > connects)
                assert watched.triggers.empty()
                await apiserver.set_state(State.CRASH)
                assert (await watched.trigger()).reason in ("refused", "reset")
            # The watch only ever held a connection: it never asked anything.
            assert apiserver.snapshot()["requests"] == {
                "total": 0,
                "by_path": {},
                "by_status": {},
            }

    run(scenario)


def test_a_crash_right_after_the_connect_triggers_at_once(pki: LabPki) -> None:
    async def scenario() -> None:
        async with fake_apiserver(pki) as apiserver:
            port = apiserver.addresses[0].port
            async with watching(pki, port, retry=10.0) as watched:
                await until(lambda: watched.watch.connected)
                await apiserver.set_state(State.CRASH)  # the connection is a few ms old
                async with asyncio.timeout(1.0):  # not `retry` after the connect
                    trigger = await watched.triggers.get()
                assert trigger.reason in ("refused", "reset")

    run(scenario)


def test_an_idle_close_by_a_live_server_only_reconnects(pki: LabPki) -> None:
    accepted: list[float] = []

    async def close_at_once(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(asyncio.get_running_loop().time())
        writer.close()  # with close_notify, as Go's idle timeout does

    async def scenario() -> None:
        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0, ssl=serving_context(pki))
        async with server:
            port = server.sockets[0].getsockname()[1]
            async with watching(pki, port, retry=0.1) as watched:
                await until(lambda: len(accepted) >= 6)
                assert watched.triggers.empty()
        # Connections closed at once are retried in pairs `retry` apart: no busy loop.
        assert accepted[-1] - accepted[0] >= 2 * 0.1

    run(scenario)


def test_a_server_that_never_listened_triggers_nothing(pki: LabPki) -> None:
    async def scenario() -> None:
        async with fake_apiserver(pki) as apiserver:
            port = apiserver.addresses[0].port
            await apiserver.set_state(State.STOPPED)
            async with watching(pki, port) as watched:
                # Several failed connects: still nothing to report, nothing was lost.
                connects = watched.watch.connects
                await apiserver.set_state(State.READY)
                await until(lambda: watched.watch.connected)
                assert watched.watch.connects == connects + 1
                assert watched.triggers.empty()

    run(scenario)


def test_a_tls_stall_on_reconnect_is_reported_after_connect_timeout(pki: LabPki) -> None:
    async def scenario() -> None:
        async with fake_apiserver(pki) as apiserver:
            port = apiserver.addresses[0].port
            async with watching(pki, port) as watched:
                await until(lambda: watched.watch.connected)
                # A hung process: it still accepts TCP but never completes a handshake. The
                # held connection is dropped by hand, through the server's private set.
                await apiserver.set_state(State.TLS_STALL)
                for connection in list(apiserver._connections):
                    connection.abort()
                assert (await watched.trigger()).reason == "timeout"

    run(scenario)

"""The daemon's BFD, in process: a session with a second `BfdService` over loopback comes Up
and goes Down when that peer falls silent, and status, metrics and the journal say so; a
session whose local address is not on the host is retried, never fatal; a reload with new
timers applies them by Poll without a flap; a reload that turns BFD off ends the session.
And ExaBGP's liveness: a stopped (SIGSTOP) ExaBGP is killed and restarted within the bound,
and the status says so meanwhile.

Each test takes its own pair of loopback addresses (127.N.M.1 the router, .2 the node), so
BFD tests running at the same time on this host do not meet on UDP 3784."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
from collections.abc import Awaitable
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import World, running, until, world_of

from announcer.bfd import BfdService, Profile, SessionKey, State
from announcer.lab.pki import LabPki
from announcer.liveness import BOUND, INTERVAL
from announcer.status_protocol import BfdStatus, StatusSnapshot

# 100 ms x 3: fast, yet no false Down on a loaded test machine (the daemon probes every 0.1 s).
FAST = Profile(transmit_interval=100_000, receive_interval=100_000, detect_multiplier=3)


def loopback_pair() -> tuple[str, str]:
    """Addresses no other test uses at the same time: 127.<pid-derived>.<random>.1/.2."""
    second = 2 + os.getpid() % 250
    third = random.SystemRandom().randrange(1, 255)
    return f"127.{second}.{third}.1", f"127.{second}.{third}.2"


def bfd_document(router: str, node: str | None, **bfd: object) -> dict[str, dict[str, object]]:
    neighbor: dict[str, object] = {"address": router, "peer_as": 65000}
    if node is not None:
        neighbor["local_address"] = node
    return {
        "bgp": {"router_id": "192.0.2.2", "local_as": 65100, "neighbors": [neighbor]},
        "bfd": {"enabled": True, "transmit_interval": 0.1, "receive_interval": 0.1, **bfd},
    }


def write_bfd(world: World, router: str, node: str | None, **more: object) -> None:
    """The test daemon's configuration, with one neighbor (`router`) and BFD; `more`:
    top-level sections and `enabled` for the bfd section."""
    keys = ("enabled", "transmit_interval")
    bfd = {key: more.pop(key) for key in keys if key in more}
    document = world.document(**bfd_document(router, node, **bfd))
    document["vips"] = ["198.51.100.10/32"]  # IPv4 only: the one neighbor is IPv4
    document.update(more)
    world.config_file.write_text(yaml.safe_dump(document))


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port: int = probe_socket.getsockname()[1]
        return port


async def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def bfd_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [
        (r.__dict__["event"], r.__dict__["neighbor"], r.__dict__["diag"])
        for r in caplog.records
        if str(r.__dict__.get("event", "")).startswith("bfd_") and "diag" in r.__dict__
    ]


def test_status_metrics_and_logs_follow_the_session_up_then_down(
    base: Path, pki: LabPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    router, node = loopback_pair()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"

    async def test() -> None:
        async with world_of(base, pki) as world:
            write_bfd(world, router, node, metrics={"listen": f"127.0.0.1:{port}"})
            async with running(world), BfdService() as peer:
                peer.add(SessionKey(ip_address(node), ip_address(router)), FAST)
                await until(lambda: _is(row(world), "up"), "BFD up in the status")
                up = await row(world)
                assert (up.neighbor, up.changes, up.last_down) == (router, 2, None)  # Init, Up
                found = await scrape(url)
                assert found["announcer_bfd_session_up"][(("neighbor", router),)] == 1.0

                loop = asyncio.get_running_loop()
                assert peer._task is not None
                peer._task.cancel()  # the router falls silent: sends nothing, hears nothing
                loop.remove_reader(peer._listeners[ip_address(router), False].fileno())
                silent = loop.time()
                await until(lambda: _is(row(world), "down"), "BFD down in the status")
                assert loop.time() - silent < 0.3 + 1.0
                down = await row(world)
                assert (down.diag, down.last_down) == ("detection_expired", "detection_expired")
                found = await scrape(url)
                assert found["announcer_bfd_session_up"][(("neighbor", router),)] == 0.0
                changes = found["announcer_bfd_state_changes_total"]
                assert changes[(("neighbor", router),)] >= 3
                last = found["announcer_bfd_last_down"]
                assert last[(("neighbor", router), ("reason", "detection_expired"))] == 1.0
                assert (await world.status()).announced  # BFD is the router's business

    asyncio.run(test())
    events = bfd_events(caplog)
    assert ("bfd_up", router, "none") in events
    assert ("bfd_down", router, "detection_expired") in events
    down = [r for r in caplog.records if r.__dict__.get("event") == "bfd_down"]
    assert down[0].levelno == logging.WARNING


async def row(world: World) -> BfdStatus:
    [only] = (await world.status()).bfd
    return only


async def _is(status: Awaitable[BfdStatus], state: str) -> bool:
    return (await status).state == state


def test_a_local_address_not_on_the_host_is_retried_not_fatal(
    base: Path, pki: LabPki, caplog: pytest.LogCaptureFixture
) -> None:
    router = "192.0.2.1"
    absent = "192.0.2.254"  # TEST-NET-1: on no interface of this host

    async def test() -> None:
        async with world_of(base, pki) as world:
            write_bfd(world, router, absent)
            async with running(world) as daemon:
                await until(lambda: _announced(world), "announced")
                [row] = (await world.status()).bfd
                assert (row.neighbor, row.state, row.changes) == (router, "down", 0)
                assert daemon.bfd.service is not None and daemon.bfd.service.status() == []

    asyncio.run(test())
    errors = [r for r in caplog.records if r.__dict__.get("event") == "bfd_error"]
    assert len(errors) == 1  # logged once, retried quietly at every tick
    assert router in errors[0].getMessage()


async def _announced(world: World) -> bool:
    return (await world.status()).announced


def test_a_reload_without_bfd_ends_the_session_with_admin_down(base: Path, pki: LabPki) -> None:
    router, node = loopback_pair()

    async def test() -> None:
        async with world_of(base, pki) as world:
            write_bfd(world, router, node)
            async with running(world) as daemon, BfdService() as peer:
                peer.add(SessionKey(ip_address(node), ip_address(router)), FAST)
                await until(lambda: peer.status()[0].state is State.UP, "peer up")
                write_bfd(world, router, node, enabled=False)
                os.kill(os.getpid(), signal.SIGHUP)
                await until(lambda: peer.status()[0].remote_state is State.ADMIN_DOWN, "admin down")
                assert (await world.status()).bfd == ()
                assert daemon.bfd.service is not None and daemon.bfd.service.status() == []

    asyncio.run(test())


def test_a_reload_with_new_timers_applies_them_without_a_flap(base: Path, pki: LabPki) -> None:
    router, node = loopback_pair()

    async def test() -> None:
        async with world_of(base, pki) as world:
            write_bfd(world, router, node)
            async with running(world), BfdService() as peer:
                peer.add(SessionKey(ip_address(node), ip_address(router)), FAST)
                await until(lambda: _is(row(world), "up"), "BFD up")
                # The peer detects the node's silence in 3 x the node's transmit interval.
                await until(
                    lambda: peer.status()[0].detection_time == pytest.approx(0.3), "0.1 s x 3"
                )
                changes = (await row(world)).changes
                write_bfd(world, router, node, transmit_interval=0.2)
                os.kill(os.getpid(), signal.SIGHUP)
                await until(
                    lambda: peer.status()[0].detection_time == pytest.approx(0.6),
                    "0.2 s x 3 (Poll)",
                )
                after = await row(world)
                assert (after.state, after.changes) == ("up", changes)

    asyncio.run(test())


def test_a_stopped_exabgp_is_killed_and_restarted_and_the_status_says_so(
    base: Path, pki: LabPki
) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: _announced(world), "announced")
            speaker = daemon.speaker
            assert speaker is not None and speaker.pid is not None
            frozen_pid = speaker.pid
            loop = asyncio.get_running_loop()
            os.kill(frozen_pid, signal.SIGSTOP)  # wedged: alive, sessions open, silent
            stopped = loop.time()
            seen: list[StatusSnapshot] = []
            while daemon.speakers.restarts() == 0 and loop.time() - stopped < 10:
                snapshot = daemon.snapshot()
                if snapshot.exabgp.killed_for is not None:
                    seen.append(snapshot)
                await asyncio.sleep(0.005)
            took = loop.time() - stopped
            assert daemon.speakers.restarts() == 1, "not restarted"
            assert took < INTERVAL + BOUND + 1.0, f"killed and restarted after {took:.2f} s"
            assert seen, "the status never said exabgp was killed"
            assert seen[0].exabgp.killed_for == "exabgp did not answer in time"
            assert not seen[0].announced and not any(v.announced for v in seen[0].vips)
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen_pid, signal.SIGCONT)  # killed already: nothing to resume
            await until(lambda: _announced(world), "announced again")
            after = await world.status()
            assert after.exabgp.pid != frozen_pid and after.exabgp.killed_for is None

    asyncio.run(test())

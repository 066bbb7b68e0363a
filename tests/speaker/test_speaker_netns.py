"""The Speaker with the real ExaBGP against a real FRR, in two network namespaces.

    spk-test-<tag>-r (FRR: zebra + bgpd, AS 65000) 198.18.0.1/30
        | veth
    spk-test-<tag>-s (this test's Speaker -> ExaBGP as `nobody` -> relay, AS 65100) 198.18.0.2/30

The session uses TCP MD5 and GTSM on both sides. The test thread enters the speaker's namespace
(setns) while the Speaker runs, so ExaBGP is forked there; routes are read from the router's
kernel FIB with `ip -j route`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from announcer.config import Config, parse_config
from announcer.lab.netns import inside
from announcer.speaker import (
    Backoff,
    Channel,
    Connected,
    Disconnected,
    SessionChanged,
    SessionState,
    Speaker,
    SpeakerEvent,
)

pytestmark = pytest.mark.netns

FRR = Path("/usr/lib/frr")
ROUTER, SPEAKER = "198.18.0.1", "198.18.0.2"
VIP = "198.51.100.10/32"
ANNOUNCE = f"neighbor {ROUTER} announce route {VIP} next-hop self"
PASSWORD = secrets.token_hex(8)
DEADLINE = 10.0
HEARTBEAT_TIMEOUT = 1.0
BGPD_CONF = f"""\
frr defaults traditional
hostname spk-test-router
router bgp 65000
 bgp router-id {ROUTER}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {SPEAKER} remote-as 65100
 neighbor {SPEAKER} timers 1 3
 neighbor {SPEAKER} timers connect 1
 neighbor {SPEAKER} password {PASSWORD}
 neighbor {SPEAKER} ttl-security hops 1
 address-family ipv4 unicast
  neighbor {SPEAKER} activate
 exit-address-family
"""


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, FRR, switching to user nobody)"
    if not (FRR / "bgpd").exists() or not shutil.which("vtysh"):
        return "needs Debian's frr (/usr/lib/frr/bgpd)"
    return None


@pytest.fixture(autouse=True)
def _requirements() -> None:
    reason = missing()
    if reason is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but this test {reason}")
        pytest.skip(reason)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class Lab:
    router: str  # namespace names
    speaker: str
    directory: Path

    def vip_next_hops(self) -> list[str]:
        routes = json.loads(ip("-n", self.router, "-j", "route", "show", VIP) or "[]")
        return [route["gateway"] for route in routes if "gateway" in route]

    def wait_for_route(self, *, present: bool) -> None:
        deadline = time.monotonic() + DEADLINE
        while (self.vip_next_hops() == [SPEAKER]) != present:
            assert time.monotonic() < deadline, f"route present={not present} after {DEADLINE} s"
            time.sleep(0.02)

    def config(self, **exabgp: object) -> Config:
        (self.directory / "password").write_text(PASSWORD + "\n")
        neighbor = {
            "address": ROUTER,
            "peer_as": 65000,
            "local_address": SPEAKER,
            "password_file": str(self.directory / "password"),
            "ttl_security": True,
        }
        return parse_config(
            {
                "vips": [VIP],
                "bgp": {
                    "router_id": SPEAKER,
                    "local_as": 65100,
                    "hold_time": 3,
                    "neighbors": [neighbor],
                },
                "state_dir": str(self.directory / "state"),
                "exabgp": {"user": "nobody", "heartbeat_timeout": HEARTBEAT_TIMEOUT, **exabgp},
            }
        )


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(2)
    router, speaker = f"spk-test-{tag}-r", f"spk-test-{tag}-s"
    directory = Path(f"/tmp/spk-test-{tag}")
    run_dir = Path(f"/var/run/frr/{router}")
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        directory.mkdir(mode=0o755)
        directory.chmod(0o755)
        make_namespaces(router, speaker)
        daemons += start_frr(router, directory, run_dir)
        yield Lab(router, speaker, directory)
    finally:
        for daemon in daemons:
            stop_process(daemon)
        for namespace in (router, speaker):
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)


def make_namespaces(router: str, speaker: str) -> None:
    for namespace in (router, speaker):
        ip("netns", "add", namespace)
        ip("-n", namespace, "link", "set", "lo", "up")
    ip("link", "add", router, "netns", router, "type", "veth", "peer", speaker, "netns", speaker)
    for namespace, address in ((router, ROUTER), (speaker, SPEAKER)):
        ip("-n", namespace, "addr", "add", f"{address}/30", "dev", namespace)
        ip("-n", namespace, "link", "set", namespace, "up")


def start_frr(namespace: str, directory: Path, run_dir: Path) -> list[subprocess.Popen[bytes]]:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "frr", "frr")
    (directory / "zebra.conf").write_text("hostname spk-test-router\n")
    (directory / "bgpd.conf").write_text(BGPD_CONF)
    daemons = []
    for name in ("zebra", "bgpd"):
        (directory / f"{name}.conf").chmod(0o644)
        with (directory / f"{name}.log").open("wb") as log:
            argv = [str(FRR / name), "-N", namespace, "-f", str(directory / f"{name}.conf")]
            argv += ["-i", str(run_dir / f"{name}.pid"), "-P", "0", "--log", "stdout"]
            daemons.append(
                subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdout=log, stderr=log)
            )
        vty = run_dir / f"{name}.vty"
        wait_until(vty.exists, f"{name} to start")
    return daemons


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"waited {DEADLINE} s for {what}"
        time.sleep(0.02)


class Daemon:
    """What the daemon would do around the Speaker: record its events, send heartbeats."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[SpeakerEvent] = asyncio.Queue()
        self.channel: Channel | None = None
        self.beating = True

    def __call__(self, event: SpeakerEvent) -> None:
        if isinstance(event, Connected):
            self.channel = event.channel
        self.events.put_nowait(event)

    async def until(self, accept: Callable[[SpeakerEvent], bool]) -> SpeakerEvent:
        async with asyncio.timeout(DEADLINE):
            while not accept(event := await self.events.get()):
                pass
            return event

    async def connected(self) -> Channel:
        event = await self.until(lambda e: isinstance(e, Connected))
        assert isinstance(event, Connected)
        return event.channel

    async def session_up(self) -> None:
        await self.until(
            lambda e: isinstance(e, SessionChanged) and e.session.state is SessionState.UP
        )

    async def heartbeats(self) -> None:
        while True:
            if self.beating and self.channel is not None and not self.channel.closed:
                await self.channel.heartbeat()
            await asyncio.sleep(HEARTBEAT_TIMEOUT / 5)


@contextlib.asynccontextmanager
async def supervised(lab: Lab) -> AsyncIterator[tuple[Daemon, Speaker]]:
    """A Speaker for `lab` and the daemon's side of it (events, heartbeats), started; on the
    way out the Speaker is stopped and the heartbeat task ended (and awaited)."""
    daemon = Daemon()
    speaker = Speaker(lab.config(), on_event=daemon, backoff=Backoff(initial=0.1))
    async with asyncio.TaskGroup() as tasks:
        beat = tasks.create_task(daemon.heartbeats())
        await speaker.start()
        try:
            yield daemon, speaker
        finally:
            await speaker.stop()
            beat.cancel()


async def announced(daemon: Daemon, lab: Lab) -> Channel:
    """Announce the VIP through the next relay connection; wait for it in the router's FIB."""
    channel = await daemon.connected()
    assert await channel.send(ANNOUNCE, timeout=5) is True
    await daemon.session_up()
    await asyncio.to_thread(lab.wait_for_route, present=True)
    return channel


def test_announce_survive_a_killed_exabgp_and_withdraw_on_stop(lab: Lab) -> None:
    async def test() -> None:
        async with supervised(lab) as (daemon, speaker):
            await announced(daemon, lab)
            assert speaker.pid is not None
            os.kill(speaker.pid, signal.SIGKILL)
            await daemon.until(lambda e: isinstance(e, Disconnected))
            await asyncio.to_thread(lab.wait_for_route, present=False)  # the session dropped
            await announced(daemon, lab)  # a new ExaBGP: replay, as the reconciler does
            assert speaker.restarts == 1
        await asyncio.to_thread(lab.wait_for_route, present=False)
        assert speaker.pid is None

    with inside(lab.speaker):
        asyncio.run(test())


def test_missed_heartbeats_make_the_relay_kill_exabgp(lab: Lab) -> None:
    async def test() -> None:
        async with supervised(lab) as (daemon, speaker):
            await announced(daemon, lab)
            killed = speaker.pid
            daemon.beating = False  # as if the decision loop hung
            stopped = time.monotonic()
            await daemon.until(lambda e: isinstance(e, Disconnected))
            assert time.monotonic() - stopped < HEARTBEAT_TIMEOUT + 1.0
            daemon.beating = True  # the next relay must not be killed too
            await asyncio.to_thread(lab.wait_for_route, present=False)
            await daemon.connected()
            assert speaker.restarts == 1 and speaker.pid != killed

    with inside(lab.speaker):
        asyncio.run(test())


def test_a_lost_ack_kills_exabgp_and_a_new_one_connects(lab: Lab) -> None:
    """After a lost ack nobody knows what ExaBGP holds: the channel closes and the relay
    kills ExaBGP (its sessions close: withdrawn); the Speaker starts a new one."""

    async def test() -> None:
        async with supervised(lab) as (daemon, speaker):
            channel = await daemon.connected()
            exabgp = speaker.pid
            with pytest.raises(TimeoutError):  # gives up before ExaBGP can answer
                await channel.send(ANNOUNCE, timeout=0)
            await daemon.until(lambda e: isinstance(e, Disconnected))
            channel = await daemon.connected()  # a new ExaBGP, and its relay
            assert speaker.pid != exabgp and speaker.restarts == 1
            assert await channel.send(ANNOUNCE, timeout=5) is True
            await asyncio.to_thread(lab.wait_for_route, present=True)

    with inside(lab.speaker):
        asyncio.run(test())

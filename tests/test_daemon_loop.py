"""The decision loop and the applier against fakes: a virtual clock, scripted probes, an
in-memory interface and a route sink that records commands; the reconciler is the real one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv4Network

import pytest

from announcer.apply import REMOVAL_CAP, Applier
from announcer.config import parse_config
from announcer.config.model import VipNetwork
from announcer.decide import DecisionLoop, next_deadline
from announcer.health import ProbeResult
from announcer.loopback import LoopbackError
from announcer.reconcile import Reconciler
from announcer.state import NodeState, Verdict

VIP = IPv4Network("198.51.100.10/32")
CONFIG = parse_config(
    {
        "apiserver": {"interval": 0.4, "timeout": 0.35, "rise": 2, "fall": 1, "min_healthy": 0},
        "vips": [str(VIP)],
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
        },
        "drain": {"delay": 3.0, "withdraw_wait": 1.0},
    }
)
ANNOUNCE = f"neighbor 192.0.2.1 announce route {VIP} next-hop self"
WITHDRAW = f"neighbor 192.0.2.1 withdraw route {VIP} next-hop self"


class FakeClock:
    """Virtual time: a wait that nothing ends jumps straight to its deadline."""

    def __init__(self) -> None:
        self.time = 100.0

    def now(self) -> float:
        return self.time

    async def wait(self, event: asyncio.Event, deadline: float) -> bool:
        await asyncio.sleep(0)  # let the other tasks run, as a real wait would
        if event.is_set():
            return True
        self.time = max(self.time, deadline)
        return False


class Log:
    """What happened, in order, across the fakes."""

    def __init__(self) -> None:
        self.entries: list[str] = []


class FakeVips:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.on: set[VipNetwork] = set()
        self.broken: set[VipNetwork] = set()

    async def ensure_present(self, vip: VipNetwork) -> bool:
        if vip in self.broken:
            raise LoopbackError(1, f"cannot add {vip}")
        self.log.entries.append(f"add {vip}")
        added = vip not in self.on
        self.on.add(vip)
        return added

    async def ensure_absent(self, vip: VipNetwork) -> bool:
        self.log.entries.append(f"remove {vip}")
        removed = vip in self.on
        self.on.discard(vip)
        return removed

    async def missing(self, vips: Iterable[VipNetwork]) -> list[VipNetwork]:
        return [vip for vip in vips if vip not in self.on]


class FakeSink:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.hold = False
        self.released = asyncio.Event()

    async def send(self, command: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        self.log.entries.append(f"send {command}")
        if self.hold:
            await self.released.wait()
        return True


class Probes:
    """Scripted results (ok / fail); each probe advances the clock by `latency`."""

    def __init__(self, clock: FakeClock, script: str = "", *, latency: float = 0.1) -> None:
        self.clock = clock
        self.script = list(script)
        self.latency = latency
        self.starts: list[float] = []
        self.extra: dict[int, float] = {}  # probe number -> extra (virtual) seconds it takes
        self.limit: int | None = None
        self.reached = asyncio.Event()

    async def probe(self) -> ProbeResult:
        at = self.clock.now()
        if self.limit is not None and len(self.starts) >= self.limit:
            self.reached.set()
            await asyncio.Event().wait()  # the test cancels the loop here
        self.starts.append(at)
        self.clock.time += self.latency + self.extra.get(len(self.starts), 0.0)
        ok = (self.script.pop(0) if self.script else "ok") == "ok"
        return ProbeResult(
            ok=ok, status=200 if ok else 500, reason="ok" if ok else "http 500: etcd",
            latency=self.latency, at=at,
        )  # fmt: skip


class Harness:
    def __init__(self, script: str = "", *, manage: bool = True, pulse: float = 0.4) -> None:
        self.log = Log()
        self.clock = FakeClock()
        self.vips = FakeVips(self.log)
        self.sink = FakeSink(self.log)
        self.reconciler = Reconciler(self.sink, ack_timeout=5.0, on_error=lambda f: None)
        self.applier = Applier(self.reconciler, self.vips if manage else None, withdraw_wait=1.0)
        self.state = NodeState(CONFIG, drained=False, now=self.clock.now(), wall=lambda: 0.0)
        self.probes = Probes(self.clock, script)
        self.beats: list[float] = []
        self.loop = DecisionLoop(
            self.state,
            check=self.probes,
            applier=self.applier,
            reconciler=self.reconciler,
            clock=self.clock,
            beat=self.beat,
            pulse=pulse,
        )

    async def beat(self) -> None:
        self.beats.append(self.clock.now())

    async def tick(self) -> None:
        await self.loop.probe_once()
        await self.loop.decide()
        await self.settle()

    async def settle(self) -> None:
        assert await self.reconciler.wait_converged(5.0)

    async def run_until(self, probes: int) -> None:
        """Run the loop until it starts probe number `probes + 1`, then stop it."""
        self.probes.limit = probes
        task = asyncio.create_task(self.loop.run())
        try:
            await asyncio.wait_for(self.probes.reached.wait(), 5.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def run(test: Callable[[Harness], Awaitable[None]], *args: object, **options: object) -> None:
    async def main() -> None:
        harness = Harness(*args, **options)  # type: ignore[arg-type]
        reconciler = asyncio.create_task(harness.reconciler.run())
        try:
            await asyncio.wait_for(test(harness), 10.0)
        finally:
            reconciler.cancel()
            await asyncio.gather(reconciler, return_exceptions=True)

    asyncio.run(main())


# ---- the schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (0.0, 0.1, (0.4, 0)),  # on time
        (0.0, 0.4, (0.8, 1)),  # exactly one tick late: that tick is skipped
        (0.0, 0.5, (0.8, 1)),
        (0.0, 1.3, (1.6, 3)),
        (0.0, 0.0, (0.4, 0)),
    ],
)
def test_next_deadline_stays_on_the_grid(
    previous: float, now: float, expected: tuple[float, int]
) -> None:
    deadline, skipped = next_deadline(previous, now, 0.4)
    assert (round(deadline, 9), skipped) == expected


def test_probes_start_on_a_drift_free_grid() -> None:
    async def test(h: Harness) -> None:
        await h.run_until(probes=8)
        offsets = [round(at - 100.0, 6) for at in h.probes.starts]
        assert offsets == [round(0.4 * n, 6) for n in range(8)]
        assert h.loop.skipped == 0

    run(test)


def test_a_late_loop_skips_the_ticks_it_missed(caplog: pytest.LogCaptureFixture) -> None:
    async def test(h: Harness) -> None:
        h.probes.extra[2] = 1.0  # the second probe "took" 1.1 s: a stopped process, say
        await h.run_until(probes=4)
        offsets = [round(at - 100.0, 6) for at in h.probes.starts]
        assert offsets == [0.0, 0.4, 1.6, 2.0]
        assert h.loop.skipped == 2

    run(test)
    assert [r.__dict__["skipped"] for r in caplog.records if r.__dict__.get("event") == "late"] == [
        2
    ]


def test_beats_every_pulse_between_probes() -> None:
    async def test(h: Harness) -> None:
        h.probes.latency = 0.0  # beats during a probe are real-time: see the next test
        await h.run_until(probes=3)
        gaps = [round(b - a, 6) for a, b in zip(h.beats, h.beats[1:], strict=False)]
        assert gaps and max(gaps) <= 0.1 + 1e-9

    run(test, pulse=0.1)


def test_beats_while_a_slow_probe_is_in_flight() -> None:
    async def test(h: Harness) -> None:
        release = asyncio.Event()

        async def slow_probe() -> ProbeResult:
            await release.wait()
            return ProbeResult(ok=True, status=200, reason="ok", latency=0.0, at=0.0)

        beats = 0

        async def beat() -> None:
            nonlocal beats
            beats += 1
            if beats == 4:
                release.set()

        loop = DecisionLoop(
            h.state, check=_Probe(slow_probe), applier=h.applier, reconciler=h.reconciler,
            clock=h.clock, beat=beat, pulse=0.01,
        )  # fmt: skip
        await loop.probe_once()
        assert beats == 4  # three beats while the probe was in flight, then it answered
        assert h.state.last_probe is not None

    run(test)


class _Probe:
    def __init__(self, probe: Callable[[], Awaitable[ProbeResult]]) -> None:
        self._probe = probe

    async def probe(self) -> ProbeResult:
        return await self._probe()


# ---- probe -> state -> routes and the interface --------------------------------------------------


def test_vip_goes_on_the_interface_before_the_announce() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        assert h.log.entries == []  # rising: nothing yet
        await h.tick()
        assert h.log.entries == [f"add {VIP}", f"send {ANNOUNCE}"]
        assert h.applier.announcing == {VIP}

    run(test)


def test_withdraw_then_wait_then_remove_the_vip() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        h.log.entries.clear()
        h.probes.script = ["fail"]
        await h.tick()  # fall 1: down, withdrawn at once
        assert h.log.entries == [f"send {WITHDRAW}"]
        assert VIP in h.vips.on
        await h.loop.decide()  # the next pulse sees the withdraw confirmed
        h.clock.time += 0.9
        await h.loop.decide()
        assert VIP in h.vips.on  # withdraw_wait not over yet
        h.clock.time += 0.2
        await h.loop.decide()
        assert h.log.entries == [f"send {WITHDRAW}", f"remove {VIP}"]
        assert h.vips.on == set()

    run(test)


def test_vip_coming_back_before_removal_stays_on_the_interface() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        h.probes.script = ["fail", "ok", "ok"]
        await h.tick()
        await h.tick()
        await h.tick()
        h.clock.time += 5.0
        await h.loop.decide()
        assert f"remove {VIP}" not in h.log.entries
        assert h.vips.on == {VIP}

    run(test)


def test_a_vip_deleted_by_hand_is_put_back(caplog: pytest.LogCaptureFixture) -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        h.vips.on.clear()
        await h.loop.decide()
        assert h.vips.on == {VIP}

    run(test)
    restored = [r.__dict__ for r in caplog.records if r.__dict__.get("event") == "vip-restored"]
    assert [fields["vip"] for fields in restored] == [str(VIP)]


def test_a_vip_that_cannot_go_on_the_interface_is_not_announced() -> None:
    async def test(h: Harness) -> None:
        h.vips.broken.add(VIP)
        await h.tick()
        await h.tick()
        assert h.reconciler.desired == frozenset()
        assert "cannot add" in h.applier.errors[VIP]
        h.vips.broken.clear()
        await h.loop.decide()
        await h.settle()
        assert h.applier.errors == {}
        assert h.log.entries == [f"add {VIP}", f"send {ANNOUNCE}"]

    run(test)


def test_an_unconfirmed_withdraw_removes_the_vip_only_after_the_cap() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        h.sink.hold = True
        h.probes.script = ["fail"]
        await h.loop.probe_once()
        await h.loop.decide()
        await asyncio.sleep(0)  # the withdraw is now in flight, unanswered
        assert not h.reconciler.converged
        h.clock.time += 1.0 + REMOVAL_CAP - 0.1
        await h.loop.decide()
        assert h.vips.on == {VIP}
        h.clock.time += 0.2
        await h.loop.decide()
        assert h.vips.on == set()
        h.sink.released.set()

    run(test)


def test_without_loopback_management_routes_go_straight_to_the_reconciler() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        assert h.log.entries == [f"send {ANNOUNCE}"]
        assert h.vips.on == set()

    run(test, manage=False)


def test_clear_removes_what_was_placed_and_what_it_is_given() -> None:
    async def test(h: Harness) -> None:
        other = IPv4Network("198.51.100.11/32")
        h.vips.on.add(other)  # left by a previous run
        await h.tick()
        await h.tick()
        await h.applier.clear([other])
        assert h.vips.on == set()
        assert h.applier.placed == frozenset()

    run(test)


def test_announce_and_withdraw_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="announcer.apply")

    async def test(h: Harness) -> None:
        for outcome in ("ok", "ok", "ok", "ok", "fail", "fail"):
            h.probes.script = [outcome]
            await h.tick()

    run(test)
    records = [r.__dict__ for r in caplog.records if r.name == "announcer.apply"]
    events = [(fields["event"], fields["vip"]) for fields in records]
    assert events == [("announce", str(VIP)), ("withdraw", str(VIP))]


def test_wake_lets_until_see_a_new_decision() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        h.state.drain(h.clock.now(), announcing=bool(h.reconciler.installed))
        waiting = asyncio.create_task(
            h.loop.until(lambda: h.reconciler.desired != h.reconciler.installed, 1.0)
        )
        await asyncio.sleep(0)
        await h.loop.decide()
        assert await waiting

    run(test)


def test_applier_verdict_with_unknown_reason_is_logged_on_withdraw() -> None:
    async def test(h: Harness) -> None:
        await h.tick()
        await h.tick()
        await h.applier.apply(Verdict(frozenset(), "operator says so"), h.clock.now())
        await h.settle()
        assert h.reconciler.installed == frozenset()

    run(test)

"""The reconciler against a fake sink that records commands and answers from a script."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from announcer.config import Community
from announcer.reconcile import FailureKind, Reconciler, SinkFailure
from announcer.routes import Route, RouteError, render_announce, render_withdraw
from announcer.speaker.errors import ChannelClosed

A = Route(neighbor=IPv4Address("192.0.2.1"), prefix=IPv4Network("198.51.100.10/32"))
B = Route(neighbor=IPv4Address("192.0.2.1"), prefix=IPv4Network("198.51.100.11/32"))
C = Route(neighbor=IPv4Address("192.0.2.5"), prefix=IPv4Network("198.51.100.10/32"))
A_GRACEFUL = replace(A, communities=(Community(0xFFFF0000),), as_path=(65100,) * 4)


def ann(route: Route) -> str:
    return render_announce(route)


def wd(route: Route) -> str:
    return render_withdraw(route)


class FakeSink:
    """Answers each command with the next scripted outcome ("done" once the script is
    empty): "done", "error", "closed", "timeout", or "hold" (wait for `release()`, then
    take the next outcome). Fails the test if two commands are ever in flight."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.commands: list[str] = []
        self.in_flight = 0
        self.held = asyncio.Event()
        self._release = asyncio.Event()

    def release(self) -> None:
        self._release.set()

    async def send(self, command: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        assert timeout == 5.0
        assert "\n" not in command
        self.in_flight += 1
        assert self.in_flight == 1, "two commands in flight"
        try:
            self.commands.append(command)
            outcome = self.script.pop(0) if self.script else "done"
            if outcome == "hold":
                self.held.set()
                await self._release.wait()
                self._release.clear()
                self.held.clear()
                outcome = self.script.pop(0) if self.script else "done"
            if outcome == "closed":
                raise ChannelClosed("the relay disconnected")
            if outcome == "timeout":
                raise TimeoutError
            return outcome == "done"
        finally:
            self.in_flight -= 1


class Harness:
    def __init__(self, sink: FakeSink | None, **options: object) -> None:
        self.failures: list[SinkFailure] = []
        self.reconciler = Reconciler(
            sink,
            ack_timeout=5.0,
            on_error=self.failures.append,
            **options,  # type: ignore[arg-type]
        )


async def settle() -> None:
    """Let every ready task run until all wait on something (the fake sink never sleeps)."""
    for _ in range(200):
        await asyncio.sleep(0)


def run(
    body: Callable[[Harness], Awaitable[None]], sink: FakeSink | None, **options: object
) -> None:
    async def main() -> None:
        harness = Harness(sink, **options)
        task = asyncio.create_task(harness.reconciler.run())
        try:
            await asyncio.wait_for(body(harness), 10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())


def test_announces_the_desired_routes_in_order() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({C, B, A})
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), ann(B), ann(C)]
        assert r.installed == {A, B, C}
        assert r.converged

    run(body, sink)


def test_only_the_difference_is_sent() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        assert await r.wait_converged(5)
        r.set_desired({A, B})
        r.set_desired({A})
        assert await r.wait_converged(5)
        await settle()
        assert sink.commands == [ann(A), ann(B), wd(B)]
        assert r.installed == {A}

    run(body, sink)


def test_changed_attributes_are_announced_in_place() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A})
        assert await r.wait_converged(5)
        r.set_desired({A_GRACEFUL})
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), ann(A_GRACEFUL)]
        assert r.installed == {A_GRACEFUL}

    run(body, sink)


def test_withdraws_go_before_announces() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        assert await r.wait_converged(5)
        r.set_desired({C, replace(B, med=5)})
        assert await r.wait_converged(5)
        assert sink.commands[2:] == [wd(A), ann(replace(B, med=5)), ann(C)]

    run(body, sink)


def test_drain_to_nothing_withdraws_everything_and_converges() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B, C})
        assert await r.wait_converged(5)
        r.set_desired(frozenset())
        assert not r.converged
        assert await r.wait_converged(5)
        assert sink.commands[3:] == [wd(A), wd(B), wd(C)]
        assert r.installed == frozenset()

    run(body, sink)


def test_a_change_during_a_command_is_seen_by_the_next_one() -> None:
    sink = FakeSink("hold")

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        await sink.held.wait()  # announce A in flight
        r.set_desired({B})
        sink.release()
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), wd(A), ann(B)]

    run(body, sink)


def test_wait_converged_times_out_while_a_command_is_pending() -> None:
    sink = FakeSink("hold")

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A})
        await sink.held.wait()
        assert not await r.wait_converged(0.01)
        sink.release()
        assert await r.wait_converged(5)

    run(body, sink)


def test_an_error_is_logged_and_triggers_a_resync(caplog: pytest.LogCaptureFixture) -> None:
    sink = FakeSink("done", "done", "error")
    failures: list[SinkFailure] = []

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        assert await r.wait_converged(5)
        r.set_desired({A, B, C})
        # C refused once: A and B are announced again at once, C after the retry delay
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), ann(B), ann(C), ann(A), ann(B), ann(C)]
        failures.extend(h.failures)

    with caplog.at_level(logging.WARNING, logger="announcer.reconcile"):
        run(body, sink, retry_delays=(0.0,))
    assert failures == [SinkFailure(FailureKind.ERROR, ann(C))]
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert [rec.getMessage() for rec in warnings] == [
        f"exabgp refused a command, resynchronising: {ann(C)}"
    ]


def test_resync_withdraws_routes_no_longer_desired() -> None:
    sink = FakeSink("done", "done", "error")
    failures: list[SinkFailure] = []

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        assert await r.wait_converged(5)
        r.set_desired({A})
        # the withdraw of B is refused: final; everything desired is announced again
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), ann(B), wd(B), ann(A)]
        failures.extend(h.failures)

    run(body, sink)
    assert failures == [SinkFailure(FailureKind.ERROR, wd(B))]


def test_a_refused_announce_is_parked_until_the_retry_delay() -> None:
    sink = FakeSink("error")

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        await settle()
        # A refused and parked for an hour; B announced meanwhile
        assert sink.commands == [ann(A), ann(B)]
        assert r.installed == {B}
        assert not r.converged
        # a new version of A is tried at once
        r.set_desired({A_GRACEFUL, B})
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), ann(B), ann(A_GRACEFUL)]

    run(body, sink, retry_delays=(3600.0,))


def test_repeated_refusals_back_off_and_never_flood() -> None:
    sink = FakeSink(*["error"] * 3)

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A})
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A)] * 4
        assert [f.kind for f in h.failures] == [FailureKind.ERROR] * 3

    run(body, sink, retry_delays=(0.0, 0.001))


@pytest.mark.parametrize(("outcome", "kind"), [("closed", "closed"), ("timeout", "timeout")])
def test_a_lost_channel_waits_for_replay_then_resends(outcome: str, kind: str) -> None:
    old = FakeSink("done", outcome)
    new = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A, B})
        await settle()
        assert old.commands == [ann(A), ann(B)]
        assert not r.connected
        assert r.installed == frozenset()
        assert not r.converged
        r.set_desired({B, C})  # nothing is sent while disconnected
        await settle()
        assert old.commands == [ann(A), ann(B)]
        r.replay(new)
        assert await r.wait_converged(5)
        # A may still be in ExaBGP (only the relay restarted): withdrawn; B and C announced
        assert new.commands == [wd(A), ann(B), ann(C)]
        assert h.failures == [SinkFailure(FailureKind(kind), ann(B))]

    run(body, old)


def test_an_answer_from_a_replaced_connection_is_void() -> None:
    old = FakeSink("hold", "closed")
    new = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A})
        await old.held.wait()  # announce A in flight on the old connection
        r.replay(new)  # the new connection arrives before the old one's failure
        old.release()
        assert await r.wait_converged(5)
        assert r.connected
        assert old.commands == [ann(A)]
        assert new.commands == [ann(A)]
        assert h.failures == []

    run(body, old)


def test_replay_on_the_same_sink_resends_everything() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A})
        assert await r.wait_converged(5)
        r.replay()
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), ann(A)]

    run(body, sink)


def test_no_sink_until_replay() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        assert r.converged  # nothing desired, nothing could be installed
        r.set_desired({A})
        await settle()
        assert not r.converged
        r.replay(sink)
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A)]

    run(body, None)


def test_disconnect_makes_installed_routes_uncertain() -> None:
    sink = FakeSink()

    async def body(h: Harness) -> None:
        r = h.reconciler
        r.set_desired({A})
        assert await r.wait_converged(5)
        r.disconnect()
        r.set_desired(frozenset())
        assert r.installed == frozenset()
        assert not r.converged  # A may still be announced by a living ExaBGP
        r.replay(sink)
        assert await r.wait_converged(5)
        assert sink.commands == [ann(A), wd(A)]

    run(body, sink)


def test_cancelling_run_mid_command_leaves_the_route_uncertain() -> None:
    async def main() -> None:
        sink = FakeSink("hold")
        r = Reconciler(sink, ack_timeout=5.0, on_error=lambda failure: None)
        task = asyncio.create_task(r.run())
        r.set_desired({A})
        await sink.held.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        r.set_desired(frozenset())
        assert not r.converged

    asyncio.run(main())


def test_set_desired_refuses_unrenderable_or_conflicting_routes() -> None:
    async def main() -> None:
        r = Reconciler(FakeSink(), ack_timeout=5.0, on_error=lambda failure: None)
        r.set_desired({A})
        with pytest.raises(RouteError, match="not a host route"):
            r.set_desired({B, replace(A, prefix=IPv4Network("198.51.100.0/24"))})
        with pytest.raises(
            ValueError, match=re.escape("two routes for 198.51.100.10/32 to 192.0.2.1")
        ):
            r.set_desired({A, A_GRACEFUL})
        assert r.desired == {A}

    asyncio.run(main())


def test_a_failing_on_error_callback_does_not_stop_the_reconciler() -> None:
    async def main() -> None:
        sink = FakeSink("error")

        def explode(failure: SinkFailure) -> None:
            raise RuntimeError("bug")

        r = Reconciler(sink, ack_timeout=5.0, on_error=explode, retry_delays=(0.0,))
        task = asyncio.create_task(r.run())
        r.set_desired({A})
        assert await r.wait_converged(5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

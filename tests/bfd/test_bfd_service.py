"""`BfdService` over real UDP sockets on the loopback interface: two speakers (127.0.0.1 and
127.0.0.2) bring a session Up, notice a silent peer, and drop foreign packets by reason."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from ipaddress import ip_address

import pytest

from announcer.bfd import BfdService, Diag, Discard, Profile, SessionKey, State, StateChange
from announcer.bfd.packet import ControlPacket, encode
from announcer.bfd.table import SessionTable

A = ip_address("127.0.0.1")
B = ip_address("127.0.0.2")
FAST = Profile(transmit_interval=20_000, receive_interval=20_000, detect_multiplier=3)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll `condition` with a deadline (the service has no event to wait on for this)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def state(service: BfdService) -> State:
    return service.status()[0].state


def test_two_speakers_come_up_and_detect_silence() -> None:
    asyncio.run(_two_speakers_come_up_and_detect_silence())


async def _two_speakers_come_up_and_detect_silence() -> None:
    changes: list[tuple[SessionKey, StateChange]] = []
    async with BfdService(on_change=lambda k, c: changes.append((k, c))) as a:
        a.add(SessionKey(B, A), FAST)
        async with BfdService() as b:
            b.add(SessionKey(A, B), FAST)
            await until(lambda: state(a) is State.UP and state(b) is State.UP)
            await until(lambda: a.status()[0].transmit_interval < 0.05)  # Poll/Final done
            status = a.status()[0]
            assert status.remote_discriminator == b.status()[0].discriminator
            assert status.detection_time == pytest.approx(0.06)
        # b left the block: it sent AdminDown, which a must not take for a failure...
        await until(lambda: state(a) is State.DOWN)
        assert changes[-1][1] == StateChange(State.UP, State.DOWN, Diag.NEIGHBOR_DOWN)
        assert a.status()[0].remote_state is State.ADMIN_DOWN
        assert a.drops == {}


def test_a_silent_peer_is_detected_within_the_detection_time() -> None:
    asyncio.run(_a_silent_peer_is_detected_within_the_detection_time())


async def _a_silent_peer_is_detected_within_the_detection_time() -> None:
    async with BfdService() as a, BfdService() as b:
        a.add(SessionKey(B, A), FAST)
        b.add(SessionKey(A, B), FAST)
        await until(lambda: state(a) is State.UP and a.status()[0].transmit_interval < 0.05)
        loop = asyncio.get_running_loop()
        asyncio.get_running_loop().remove_reader(b._listeners[B, False].fileno())  # b freezes
        frozen = loop.time()
        await until(lambda: state(b) is State.DOWN)  # b hears nothing
        assert loop.time() - frozen < 0.06 + 0.5
        assert b.status()[0].last_down is Diag.DETECTION_EXPIRED
        # b says so to a, which goes Down, then Init (b's Down packets still arrive).
        await until(lambda: a.status()[0].last_down is Diag.NEIGHBOR_DOWN)
        assert state(a) in (State.DOWN, State.INIT)


def _send(payload: bytes, *, ttl: int, source: str = "127.0.0.2") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.bind((source, 0))
        sock.sendto(payload, ("127.0.0.1", 3784))


def _packet(*, your: int = 0, state: State = State.DOWN) -> bytes:
    return encode(
        ControlPacket(
            state=state,
            detect_mult=3,
            my_discriminator=7,
            your_discriminator=your,
            desired_min_tx=1_000_000,
            required_min_rx=1_000_000,
        )
    )


def test_foreign_and_bad_packets_are_counted_by_reason() -> None:
    asyncio.run(_foreign_and_bad_packets_are_counted_by_reason())


async def _foreign_and_bad_packets_are_counted_by_reason() -> None:
    async with BfdService() as a:
        a.add(SessionKey(B, A), FAST)
        ours = a.status()[0].discriminator
        cases = [
            (_packet(), 64, "127.0.0.2", Discard.TTL),
            (b"\xff" * 3, 255, "127.0.0.2", Discard.SHORT),
            (b"\x00" * 24, 255, "127.0.0.2", Discard.VERSION),
            (_packet(), 255, "127.0.0.3", Discard.UNKNOWN_PEER),
            (
                _packet(your=ours ^ 1, state=State.UP),
                255,
                "127.0.0.2",
                Discard.UNKNOWN_DISCRIMINATOR,
            ),
            (_packet(your=ours, state=State.UP), 255, "127.0.0.3", Discard.UNKNOWN_PEER),
        ]
        expected: Counter[Discard] = Counter()
        for payload, ttl, source, reason in cases:
            _send(payload, ttl=ttl, source=source)
            expected[reason] += 1
            await until(lambda: a.drops == expected)
        assert state(a) is State.DOWN
        _send(_packet(), ttl=255)
        await until(lambda: state(a) is State.INIT)  # a good packet still gets through


def test_the_table_gives_unique_non_zero_discriminators() -> None:
    values = iter([0.0, 0.0, 0.5, 0.999999999])
    table = SessionTable(random=lambda: next(values))
    first = table.add(SessionKey(B, A), FAST, 0.0)
    second = table.add(SessionKey(B, A, multihop=True), FAST, 0.0)
    assert first.discriminator == 1
    assert second.discriminator == 1 + int(0.5 * 0xFFFFFFFF)  # 1 was taken
    with pytest.raises(ValueError, match="exists already"):
        table.add(SessionKey(B, A), FAST, 0.0)


def test_sessions_of_both_families_are_listed_ipv4_first() -> None:
    draws = iter([0.25, 0.5])
    table = SessionTable(random=lambda: next(draws))
    v6 = SessionKey(ip_address("2001:db8::1"), ip_address("2001:db8::2"))
    v4 = SessionKey(B, A, multihop=True)
    table.add(v6, FAST, 0.0)
    table.add(v4, FAST, 0.0)
    assert [key for key, _ in table] == [v4, v6]


def test_a_broken_random_source_raises_instead_of_hanging() -> None:
    table = SessionTable(random=lambda: 0.5)
    table.add(SessionKey(B, A), FAST, 0.0)
    with pytest.raises(RuntimeError, match="no free BFD discriminator"):
        table.add(SessionKey(B, A, multihop=True), FAST, 0.0)


def test_a_session_key_needs_one_family() -> None:
    with pytest.raises(ValueError, match="differ in family"):
        SessionKey(ip_address("::1"), A)

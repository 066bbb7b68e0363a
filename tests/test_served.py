"""The nobody-serves-the-VIP check against loopback listeners (and their absence)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address

import pytest

from announcer.served import anyone_serves, vip_served

LOOPBACK, OTHER = ip_address("127.0.0.1"), ip_address("127.0.0.2")


@contextmanager
def listener(host: str = "127.0.0.1", port: int = 0, backlog: int = 8) -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind((host, port))
    sock.listen(backlog)
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def black_hole(host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A port on `host` whose SYNs go unanswered: a listener with a full accept queue."""
    with listener(host, port, backlog=0) as sock:
        bound: int = sock.getsockname()[1]
        with socket.create_connection((host, bound), timeout=2.0):
            yield bound


def closed_port() -> int:
    with listener() as sock:
        port: int = sock.getsockname()[1]
    return port


def test_a_listener_serves() -> None:
    with listener() as sock:
        answer = asyncio.run(vip_served(LOOPBACK, sock.getsockname()[1], connect_timeout=2.0))
        sock.settimeout(2.0)
        accepted, _ = sock.accept()
        with accepted:
            # Nothing is sent: the check ends the connection once it is established.
            assert accepted.recv(1) == b""
    assert (answer.served, answer.reason) == (True, "accepted")


def test_a_refused_connect_is_unserved() -> None:
    answer = asyncio.run(vip_served(LOOPBACK, closed_port(), connect_timeout=2.0))
    assert (answer.served, answer.reason) == (False, "refused")


def test_no_answer_within_the_deadline_is_unserved() -> None:
    with black_hole() as port:
        answer = asyncio.run(vip_served(LOOPBACK, port, connect_timeout=0.2))
    assert (answer.served, answer.reason) == (False, "timeout")


def test_an_accepting_vip_wins_over_a_silent_one() -> None:
    with black_hole() as port, listener("127.0.0.2", port):
        answer = asyncio.run(anyone_serves([LOOPBACK, OTHER], port, connect_timeout=2.0))
    assert (answer.address, answer.served, answer.reason) == (OTHER, True, "accepted")


def test_a_refusing_vip_speaks_for_all_without_waiting_for_a_silent_one() -> None:
    # 127.0.0.2 has no listener on the port: refused at once, well before the deadline.
    with black_hole() as port:
        answer = asyncio.run(anyone_serves([LOOPBACK, OTHER], port, connect_timeout=30.0))
    assert (answer.address, answer.served, answer.reason) == (OTHER, False, "refused")


def test_every_vip_silent_is_a_timeout() -> None:
    with black_hole() as port, black_hole("127.0.0.2", port):
        answer = asyncio.run(anyone_serves([LOOPBACK, OTHER], port, connect_timeout=0.2))
    assert (answer.address, answer.served, answer.reason) == (LOOPBACK, False, "timeout")


def test_no_vip_is_an_error() -> None:
    with pytest.raises(ValueError, match="addresses: no VIP"):
        asyncio.run(anyone_serves([], 6443, connect_timeout=1.0))

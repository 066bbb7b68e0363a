"""The nobody-serves-the-VIP check against loopback listeners (and their absence)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address

import pytest

from announcer.served import anyone_serves, vip_served

LOOPBACK = ip_address("127.0.0.1")


@contextmanager
def listener(backlog: int = 8) -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    try:
        yield sock
    finally:
        sock.close()


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
    # A listener whose accept queue is full drops further SYNs: a black hole on loopback.
    with listener(backlog=0) as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            answer = asyncio.run(vip_served(LOOPBACK, port, connect_timeout=0.2))
    assert (answer.served, answer.reason) == (False, "timeout")


def test_any_served_vip_is_enough() -> None:
    other = ip_address("127.0.0.2")
    with listener() as sock:
        port = sock.getsockname()[1]
        answer = asyncio.run(anyone_serves([other, LOOPBACK], port, connect_timeout=2.0))
    assert (answer.address, answer.served) == (LOOPBACK, True)


def test_none_served_reports_the_first() -> None:
    port = closed_port()
    answer = asyncio.run(
        anyone_serves([LOOPBACK, ip_address("127.0.0.2")], port, connect_timeout=2.0)
    )
    assert (answer.address, answer.served, answer.reason) == (LOOPBACK, False, "refused")


def test_no_vip_is_an_error() -> None:
    with pytest.raises(ValueError, match="addresses: no VIP"):
        asyncio.run(anyone_serves([], 6443, connect_timeout=1.0))

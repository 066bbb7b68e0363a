"""The rtnetlink codec, and a read-only dump of this host's loopback addresses (adding and
removing addresses is tested in namespaces of its own, tests/test_loopback.py)."""

from __future__ import annotations

import socket
from ipaddress import ip_address

from announcer import rtnetlink
from announcer.rtnetlink import Address, Rtnetlink


def test_an_address_message_round_trips() -> None:
    net = Rtnetlink()
    body = net._ifaddr(ip_address("2001:db8::10"), 128, index=7, scope=0, flags=2)
    assert rtnetlink._parse_address(body) == Address(ip_address("2001:db8::10"), 128, 7)


def test_messages_are_split_on_their_aligned_lengths() -> None:
    first = rtnetlink._HEADER.pack(rtnetlink._HEADER.size + 5, 20, 0, 1, 0) + b"abcde\0\0\0"
    second = rtnetlink._HEADER.pack(rtnetlink._HEADER.size, rtnetlink.NLMSG_DONE, 0, 1, 0)
    assert list(rtnetlink._messages(first + second)) == [(20, 1, b"abcde"), (3, 1, b"")]


def test_the_dump_of_lo_lists_its_addresses_on_one_kept_socket() -> None:
    net = Rtnetlink()
    try:
        index = socket.if_nametoindex("lo")
        first = net.dump(index)
        kept = net._socket
        assert Address(ip_address("127.0.0.1"), 8, index) in first
        assert net.dump(index) == first and net._socket is kept
    finally:
        net.close()

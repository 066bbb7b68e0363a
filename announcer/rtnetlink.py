"""The few rtnetlink messages `announcer.loopback` needs, on one kept socket: add, delete and
dump interface addresses (RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR).

A general netlink library costs the daemon ~13 MiB and most of a tick's CPU to parse a
dump; these three requests are a few `struct` calls. Calls are synchronous: the kernel
answers an address request on a local socket in microseconds, so they do not block the event
loop in any way that matters; a socket that fails is closed and opened again on the next call.

Must not: decide which addresses belong where (`announcer.loopback` does), or speak any other
part of netlink.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

__all__ = ["Address", "NetlinkError", "Rtnetlink"]

RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
NLM_F_DUMP: Final = 0x300
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2

_HEADER: Final = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFADDR: Final = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_ATTR: Final = struct.Struct("=HH")  # rtattr: length, type
_ERROR: Final = struct.Struct("=i")
_TIMEOUT: Final = 2.0
_BUFFER: Final = 65536


class NetlinkError(OSError):
    """The kernel's negative answer (`errno`), or a socket that failed."""


@dataclass(frozen=True, slots=True)
class Address:
    """One address as the kernel lists it on an interface."""

    address: IPv4Address | IPv6Address
    prefixlen: int
    index: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    data = _ATTR.pack(_ATTR.size + len(value), kind) + value
    return data + b"\0" * (_align(len(data)) - len(data))


def _family(address: IPv4Address | IPv6Address) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


class Rtnetlink:
    """One NETLINK_ROUTE socket, opened on first use in the caller's network namespace."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._seq = 0

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def __del__(self) -> None:  # the socket lives as long as its owner, not longer
        self.close()

    def add(
        self,
        address: IPv4Address | IPv6Address,
        prefixlen: int,
        *,
        index: int,
        scope: int,
        flags: int,
    ) -> None:
        """Add an address; NetlinkError(EEXIST) if it is there."""
        body = self._ifaddr(address, prefixlen, index=index, scope=scope, flags=flags)
        self._ask(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def delete(self, address: IPv4Address | IPv6Address, prefixlen: int, *, index: int) -> None:
        """Delete an address; NetlinkError(EADDRNOTAVAIL) if it is not there."""
        body = self._ifaddr(address, prefixlen, index=index, scope=0, flags=0)
        self._ask(RTM_DELADDR, NLM_F_ACK, body)

    def dump(self, index: int) -> list[Address]:
        """The addresses on interface `index` (both families)."""
        body = _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found: list[Address] = []
        for payload in self._ask(RTM_GETADDR, NLM_F_DUMP, body):
            address = _parse_address(payload)
            if address is not None and address.index == index:
                found.append(address)
        return found

    # -- the wire

    def _ifaddr(
        self,
        address: IPv4Address | IPv6Address,
        prefixlen: int,
        *,
        index: int,
        scope: int,
        flags: int,
    ) -> bytes:
        packed = address.packed
        head = _IFADDR.pack(_family(address), prefixlen, flags, scope, index)
        return head + _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)

    def _ask(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        sock = self._open()
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        message = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0)
        try:
            sock.send(message + body)
            return self._answers(sock, seq)
        except NetlinkError as exc:
            if exc.errno in (errno.EEXIST, errno.EADDRNOTAVAIL, errno.ENODEV):
                raise
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise NetlinkError(exc.errno, f"netlink: {exc.strerror or exc}") from exc

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.settimeout(_TIMEOUT)
            sock.bind((0, 0))
            self._socket = sock
        return self._socket

    def _answers(self, sock: socket.socket, seq: int) -> list[bytes]:
        """The payloads answering `seq`, up to its ack (an error of 0) or the dump's end."""
        payloads: list[bytes] = []
        while True:
            for kind, got_seq, payload in _messages(sock.recv(_BUFFER)):
                if got_seq != seq:
                    continue  # an answer to an earlier request that timed out
                if kind == NLMSG_ERROR:
                    (code,) = _ERROR.unpack_from(payload)
                    if code:
                        raise NetlinkError(-code, f"netlink: {errno.errorcode.get(-code, code)}")
                    return payloads
                if kind == NLMSG_DONE:
                    return payloads
                payloads.append(payload)


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, seq, data[offset + _HEADER.size : offset + length]
        offset += _align(length)


def _parse_address(payload: bytes) -> Address | None:
    family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(payload)
    attrs: dict[int, bytes] = {}
    offset = _IFADDR.size
    while offset + _ATTR.size <= len(payload):
        length, kind = _ATTR.unpack_from(payload, offset)
        if length < _ATTR.size:
            break
        attrs[kind] = payload[offset + _ATTR.size : offset + length]
        offset += _align(length)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return Address(ip_address(raw), prefixlen, index)

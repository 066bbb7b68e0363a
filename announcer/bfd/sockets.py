"""The UDP sockets of BFD: one listening socket per address family and kind, one sending
socket per session, and reading a datagram together with the TTL / Hop Limit it arrived with.

Listening sockets are bound to the local address of the sessions, not to every address.
RFC 5881 (single-hop): destination port 3784; the source port is in 49152-65535 and the same
for every packet of a session; packets are sent with TTL / Hop Limit 255, and the receiver
needs the received value to discard anything not sent from a directly connected system.
RFC 5883 (multihop): destination port 4784, same source-port rule. Packets are sent with 255
there too; the received value is not checked (the path length is not known).

Must not: decode packets, keep sessions or decide what to drop.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

IPAddress = IPv4Address | IPv6Address

SINGLE_HOP_PORT: Final = 3784
MULTIHOP_PORT: Final = 4784
SOURCE_PORTS: Final = range(49152, 65536)
TTL: Final = 255
_MAX_DATAGRAM: Final = 1500
_INT: Final = struct.Struct("=i")
_BIND_ATTEMPTS: Final = 64
# Linux's IP_RECVTTL, which Python's socket module names only from 3.14 on.
_IP_RECVTTL: Final = getattr(socket, "IP_RECVTTL", 12)


class BfdSocketError(Exception):
    """A BFD socket could not be opened; the message names the address and port."""


@dataclass(frozen=True)
class Datagram:
    payload: bytes
    source: IPAddress
    ttl: int | None  # None if the kernel did not say (never for sockets opened here)


def port(*, multihop: bool) -> int:
    return MULTIHOP_PORT if multihop else SINGLE_HOP_PORT


def _family(version: int) -> socket.AddressFamily:
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def listening_socket(local: IPAddress, *, multihop: bool) -> socket.socket:
    """A non-blocking socket on `local`'s BFD port that reports each packet's TTL."""
    sock = socket.socket(_family(local.version), socket.SOCK_DGRAM)
    address = (str(local), port(multihop=multihop))
    try:
        sock.setblocking(False)
        if local.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise BfdSocketError(f"cannot listen on UDP {address[0]} port {address[1]}: {exc}") from exc
    return sock


def sending_socket(local: IPAddress, *, random: Callable[[], float]) -> socket.socket:
    """A non-blocking socket bound to `local` and a free source port, sending with TTL 255."""
    sock = socket.socket(_family(local.version), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        _bind_source_port(sock, local, random)
    except OSError as exc:
        sock.close()
        raise BfdSocketError(f"cannot send BFD from {local}: {exc}") from exc
    return sock


def _bind_source_port(sock: socket.socket, local: IPAddress, random: Callable[[], float]) -> None:
    for _ in range(_BIND_ATTEMPTS):
        candidate = SOURCE_PORTS[int(random() * len(SOURCE_PORTS)) % len(SOURCE_PORTS)]
        try:
            sock.bind((str(local), candidate))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return
    raise OSError(errno.EADDRINUSE, f"no free source port after {_BIND_ATTEMPTS} tries")


def receive(sock: socket.socket) -> Datagram | None:
    """The next waiting datagram, or None if there is none."""
    try:
        payload, ancillary, _flags, source = sock.recvmsg(
            _MAX_DATAGRAM, socket.CMSG_SPACE(_INT.size)
        )
    except OSError:  # nothing waiting, or an error the next read may not have: never raise
        return None
    ttl = None
    for level, kind, data in ancillary:
        is_ttl = (level, kind) == (socket.IPPROTO_IP, socket.IP_TTL)
        if is_ttl or (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT):
            ttl = _INT.unpack_from(data.ljust(_INT.size, b"\0"))[0]
    return Datagram(payload=payload, source=ip_address(source[0]), ttl=ttl)

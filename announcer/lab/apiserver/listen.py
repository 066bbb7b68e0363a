"""Listen addresses of the fake apiserver: parsing `HOST:PORT` and binding sockets.

Owns the `[::]:6443` dual-stack default (one IPv6 socket that also takes IPv4, as Go's
listener does), and the jammed listener of `connect-hang`. It must not accept connections.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

DEFAULT_LISTEN = "[::]:6443"
_JAM_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class ListenAddress:
    host: str  # an IP address literal, without brackets
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """`127.0.0.1:6443`, `[::]:6443` or `[::1]:0` (0: the kernel picks the port)."""
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address needs brackets, as in [::]:6443")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{text!r}: {port!r} is not a port number")
        return cls(str(address), int(port))


def bind(address: ListenAddress) -> socket.socket:
    """A listening socket for `address`; the IPv6 wildcard takes IPv4 too where it can."""
    ip = ipaddress.ip_address(address.host)
    if ip.version == 4:
        return socket.create_server((address.host, address.port))
    dual = ip == ipaddress.IPv6Address("::") and socket.has_dualstack_ipv6()
    return socket.create_server(
        (address.host, address.port), family=socket.AF_INET6, dualstack_ipv6=dual
    )


def jammed(address: ListenAddress) -> list[socket.socket]:
    """A listener on `address` whose accept queue is full, and the connection meant to fill it
    (close both to end the jam). It never accepts, and with a backlog of 0 the queue holds
    one connection: Linux then drops every SYN (a listen overflow), so a client's connect
    neither succeeds nor is refused; it retransmits its SYN until its own deadline.
    Whichever connection arrives first fills the queue: a client (the daemon's probe or its
    crash watch, reconnecting as the old listener closed) may beat the filler, whose SYNs
    are then dropped like everyone else's. The jam stands once the queue is full."""
    listener = bind(address)
    listener.listen(0)
    ip = ipaddress.ip_address(address.host)
    target = ("::1" if ip.version == 6 else "127.0.0.1") if ip.is_unspecified else address.host
    filler = socket.socket(listener.family, socket.SOCK_STREAM)
    filler.setblocking(False)
    filler.connect_ex((target, listener.getsockname()[1]))
    deadline = time.monotonic() + _JAM_TIMEOUT
    while _queued(listener) < 1:
        if time.monotonic() > deadline:
            filler.close()
            listener.close()
            raise TimeoutError(f"{address}: nothing in the accept queue after {_JAM_TIMEOUT} s")
        time.sleep(0.001)
    return [listener, filler]


def _queued(listener: socket.socket) -> int:
    """Connections waiting in `listener`'s accept queue (TCP_INFO's tcpi_unacked, which a
    listening socket sets to its accept queue's length)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    return int(struct.unpack_from("I", info, 24)[0])

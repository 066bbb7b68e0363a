"""Listen addresses of the fake apiserver: parsing `HOST:PORT` and binding sockets.

Owns the `[::]:6443` dual-stack default (one IPv6 socket that also takes IPv4, as Go's
listener does), and the jammed listener of `connect-hang`. It must not accept connections.
"""

from __future__ import annotations

import ipaddress
import socket
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
    """A listener on `address` whose accept queue is full, and the connection filling it
    (close both to end the jam). It never accepts, and with a backlog of 0 the queue holds
    one connection: Linux then drops every SYN (a listen overflow), so a client's connect
    neither succeeds nor is refused; it retransmits its SYN until its own deadline."""
    listener = bind(address)
    listener.listen(0)
    ip = ipaddress.ip_address(address.host)
    target = ("::1" if ip.version == 6 else "127.0.0.1") if ip.is_unspecified else address.host
    filler = socket.socket(listener.family, socket.SOCK_STREAM)
    try:
        filler.settimeout(_JAM_TIMEOUT)
        filler.connect((target, listener.getsockname()[1]))
    except OSError:
        filler.close()
        listener.close()
        raise
    return [listener, filler]

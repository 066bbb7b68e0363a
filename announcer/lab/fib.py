"""A node's kernel FIB, read over netlink: which gateways carry a prefix right now.

`Fib(netns)` holds one netlink socket in the namespace (opening it never creates the
namespace) and answers `nexthops(prefix)`: the set of gateway addresses of the kernel route
for exactly that prefix (one per ECMP path; empty when there is no route); `wait_nexthops`
watches it (a route dump every few ms) until a predicate holds. `wait_for` polls any predicate
until it holds or time runs out: the blocking helper for tests and `lab up`.

FRR installs routes through kernel nexthop objects; the route dump still carries the
gateways as long as `net.ipv4.nexthop_compat_mode` is 1 (the kernel default).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from types import TracebackType
from typing import TypeVar

from pyroute2 import NetNS

from announcer.lab.netns import LabError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
T = TypeVar("T")

_MAIN_TABLE = 254


class Fib:
    """The kernel routes of one network namespace."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        try:
            # flags=0: never create the namespace (pyroute2's default would).
            self._ns = NetNS(netns, flags=0)
        except OSError as exc:
            raise LabError(f"cannot open network namespace {netns}: {exc}") from exc

    def __enter__(self) -> Fib:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._ns.close()

    def nexthops(self, prefix: IPNetwork) -> frozenset[IPAddress]:
        """Gateways of the main-table route for exactly `prefix` (empty if none)."""
        family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        gateways: set[IPAddress] = set()
        for route in self._ns.route("dump", family=family):
            if _matches(route, prefix):
                gateways.update(_gateways(route))
        return frozenset(gateways)

    def wait_nexthops(
        self,
        prefix: IPNetwork,
        predicate: Callable[[frozenset[IPAddress]], bool],
        timeout: float,
        *,
        interval: float = 0.005,
    ) -> frozenset[IPAddress]:
        """Watch `prefix` until its nexthops satisfy `predicate`; those nexthops.
        TimeoutError (with the last set seen) after `timeout` seconds."""
        last: list[frozenset[IPAddress]] = [frozenset()]

        def check() -> bool:
            last[0] = self.nexthops(prefix)
            return predicate(last[0])

        try:
            wait_for(check, timeout, interval=interval)
        except TimeoutError:
            seen = sorted(map(str, last[0]))
            msg = f"{self.netns} {prefix}: nexthops still {seen} after {timeout:g} s"
            raise TimeoutError(msg) from None
        return last[0]


def _matches(route: object, prefix: IPNetwork) -> bool:
    get = getattr(route, "get", None)
    if get is None or get("dst_len") != prefix.prefixlen:
        return False
    if get("RTA_TABLE") != _MAIN_TABLE:
        return False
    dst = get("RTA_DST")
    return dst is not None and ip_address(dst) == prefix.network_address


def _gateways(route: object) -> set[IPAddress]:
    get = getattr(route, "get")  # noqa: B009 - pyroute2 messages are untyped
    found: set[IPAddress] = set()
    if (gateway := get("RTA_GATEWAY")) is not None:
        found.add(ip_address(gateway))
    for hop in get("RTA_MULTIPATH") or ():
        if (gateway := hop.get("RTA_GATEWAY")) is not None:
            found.add(ip_address(gateway))
    return found


def nexthops(netns: str, prefix: IPNetwork) -> frozenset[IPAddress]:
    """One-shot `Fib(netns).nexthops(prefix)`."""
    with Fib(netns) as fib:
        return fib.nexthops(prefix)


def wait_for(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.02, what: str = ""
) -> T:
    """Call `predicate` until it returns something truthy (returned) or `timeout` seconds
    pass (TimeoutError naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout:g} s: {value!r}")
        time.sleep(interval)

"""Watch a router's kernel FIB by netlink events: every change of the VIP routes, timestamped.

`FibWatcher(netns, prefixes)` runs one thread holding a netlink socket created inside the
router's namespace (pyroute2's namespace socket helper) and bound to the IPv4 and IPv6 route
groups and the nexthop-object group. Each datagram is stamped with `time.monotonic()` when it
is read, so fault times taken in the injecting process compare directly. For each watched
prefix it keeps the history of its nexthop sets (`FibChange`, one entry per distinct set);
any other route learned over BGP (unless `bgp_is_foreign` is false: a leaf learns the
client's subnet from the spine), or through a gateway of `foreign_gateways`, is noted as a
`ForeignRoute` (nothing but the VIPs may come from a control-plane node). Several watchers
may share one `condition`, so one wait covers every router (`watchset`).

FRR installs routes through kernel nexthop objects. With `net.ipv4.nexthop_compat_mode` = 1
(the default) route notifications still carry the expanded gateways, so the state is read
from the messages themselves; after each batch that touched a watched route or any nexthop
object (a group changed in place sends no route message) a route dump confirms it, and a
difference is recorded as a change at the dump's time. An IPv6 route replaced by FRR shows
as a delete immediately followed by an add: that gap is real in the kernel and stays in the
history; the invariant checker decides what gap counts as a blackhole.

It only observes: it never changes a route, and knows nothing of nodes or faults.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from types import TracebackType

from pyroute2.netlink.rtnl import (
    RTM_DELROUTE,
    RTM_NEWROUTE,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netns import create_socket

from announcer.lab.fib import Fib, IPAddress, IPNetwork
from announcer.lab.netns import LabError

RTNLGRP_NEXTHOP = 32  # above 31: joined with NETLINK_ADD_MEMBERSHIP, not bind()
RTM_NEWNEXTHOP, RTM_DELNEXTHOP = 104, 105
RTPROT_BGP = 186
_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP = 270, 1
_MAIN_TABLE = 254
_LINK_SCOPE = 253
_RCVBUF = 4 << 20
_START_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class FibChange:
    """From `at` (monotonic seconds) on, `prefix` was routed via `nexthops` (empty: no route)."""

    at: float
    prefix: IPNetwork
    nexthops: frozenset[IPAddress]


@dataclass(frozen=True, slots=True)
class ForeignRoute:
    """A route that is not a watched prefix but came over BGP or via a watched gateway."""

    at: float
    prefix: str
    gateways: frozenset[IPAddress]


class FibWatcher:
    """The nexthop history of `prefixes` in `netns`'s main table, kept by a thread."""

    def __init__(
        self,
        netns: str,
        prefixes: Iterable[IPNetwork],
        *,
        foreign_gateways: Iterable[IPAddress] = (),
        bgp_is_foreign: bool = True,
        condition: threading.Condition | None = None,
    ) -> None:
        self.netns = netns
        self.prefixes = tuple(prefixes)
        self._foreign_gateways = frozenset(foreign_gateways)
        self._bgp_is_foreign = bgp_is_foreign
        self._cond = condition or threading.Condition()
        self._history: dict[IPNetwork, list[FibChange]] = {p: [] for p in self.prefixes}
        self._foreign: list[ForeignRoute] = []
        self._error: BaseException | None = None
        self._started = False
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"fib-{netns}", daemon=True)

    def __enter__(self) -> FibWatcher:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the thread and return once the initial state is known."""
        self._thread.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._started or self._error, _START_TIMEOUT):
                raise LabError(f"{self.netns}: FIB watcher did not start in {_START_TIMEOUT} s")
        self.raise_error()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join(timeout=5.0)
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def raise_error(self) -> None:
        """Raise what stopped the thread, if anything did."""
        if self._error is not None:
            raise LabError(f"{self.netns}: FIB watcher failed: {self._error!r}") from self._error

    # ---- reading ------------------------------------------------------------------------

    def history(self, prefix: IPNetwork) -> tuple[FibChange, ...]:
        with self._cond:
            return tuple(self._history[prefix])

    def current(self, prefix: IPNetwork) -> frozenset[IPAddress]:
        with self._cond:
            changes = self._history[prefix]
            return changes[-1].nexthops if changes else frozenset()

    def foreign(self) -> tuple[ForeignRoute, ...]:
        with self._cond:
            return tuple(self._foreign)

    def histories(self) -> list[tuple[FibChange, ...]]:
        """One history per watched prefix: what a node's presence is read from."""
        return [self.history(prefix) for prefix in self.prefixes]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` (called under the watcher's lock, after every change)
        holds or `timeout` seconds pass; whether it holds."""
        with self._cond:
            held = self._cond.wait_for(lambda: predicate() or self._error is not None, timeout)
        self.raise_error()
        return bool(held)

    # ---- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            sock = create_socket(
                self.netns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE, flags=0
            )
            with sock, Fib(self.netns) as fib:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
                sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, RTNLGRP_NEXTHOP)
                self._confirm(fib, time.monotonic())
                with self._cond:
                    self._started = True
                    self._cond.notify_all()
                self._loop(sock, fib)
        except BaseException as exc:  # reported to the reader, never lost
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _loop(self, sock: socket.socket, fib: Fib) -> None:
        marshal = MarshalRtnl()
        while True:
            ready, _, _ = select.select([sock.fileno(), self._stop_r], [], [])
            if self._stop_r in ready:
                return
            at = time.monotonic()
            touched = False
            for data in _drain(sock):
                for message in marshal.parse(data):
                    touched |= self._on_message(message, at)
            if touched:
                self._confirm(fib, time.monotonic())

    def _on_message(self, message: object, at: float) -> bool:
        """Apply one netlink message; whether a watched route or a nexthop object changed."""
        get = getattr(message, "get")  # noqa: B009 - pyroute2 messages are untyped
        kind = get("header", {}).get("type")
        if kind in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP):
            return True
        if kind not in (RTM_NEWROUTE, RTM_DELROUTE) or get("RTA_TABLE") != _MAIN_TABLE:
            return False
        dst = get("RTA_DST")
        if dst is None:
            return False
        prefix = ip_network(f"{dst}/{get('dst_len')}")
        gateways = _gateways(get)
        if prefix in self._history:
            self._record(prefix, frozenset() if kind == RTM_DELROUTE else gateways, at)
            return True
        bgp = self._bgp_is_foreign and get("proto") == RTPROT_BGP
        if kind == RTM_NEWROUTE and (bgp or gateways & self._foreign_gateways):
            with self._cond:
                self._foreign.append(ForeignRoute(at, str(prefix), gateways))
                self._cond.notify_all()
        return False

    def _confirm(self, fib: Fib, at: float) -> None:
        for prefix in self.prefixes:
            self._record(prefix, fib.nexthops(prefix), at)

    def _record(self, prefix: IPNetwork, nexthops: frozenset[IPAddress], at: float) -> None:
        with self._cond:
            changes = self._history[prefix]
            if not changes or changes[-1].nexthops != nexthops:
                changes.append(FibChange(at, prefix, nexthops))
                self._cond.notify_all()


def _drain(sock: socket.socket) -> Iterable[bytes]:
    """Every datagram waiting on `sock` (at least one: select said it is readable)."""
    yield sock.recv(1 << 16)
    while True:
        try:
            yield sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


def _gateways(get: Callable[..., object]) -> frozenset[IPAddress]:
    found: set[IPAddress] = set()
    if isinstance(gateway := get("RTA_GATEWAY"), str):
        found.add(ip_address(gateway))
    hops = get("RTA_MULTIPATH")
    for hop in hops if isinstance(hops, list) else ():
        if isinstance(gateway := hop.get("RTA_GATEWAY"), str):
            found.add(ip_address(gateway))
    return frozenset(found)


def interface_addresses(
    netns: str, *, exclude: Sequence[str] = ("lo",), link_local: bool = False
) -> frozenset[IPAddress]:
    """Global addresses (and link-local ones with `link_local`) of `netns`'s interfaces but
    `exclude`: what a router sees as the node's gateway addresses (the VIPs on `lo` are not;
    a spine routes IPv6 through a leaf's link-local address)."""
    from pyroute2 import IPRoute

    try:
        with IPRoute(netns=netns, flags=0) as ipr:
            names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
            return frozenset(
                ip_address(addr.get("IFA_ADDRESS"))
                for addr in ipr.get_addr()
                if names.get(addr["index"]) not in exclude
                and (addr["scope"] == 0 or (link_local and addr["scope"] == _LINK_SCOPE))
            )
    except OSError as exc:
        raise LabError(f"cannot read the addresses of {netns}: {exc}") from exc

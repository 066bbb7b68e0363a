"""The loopback VIP manager in network namespaces of its own.

Two namespaces joined by a veth pair: `router` routes the VIPs to `node`, whose loopback gets
them. Code runs inside a namespace on a thread that setns(2)'ed into it (network namespaces
are per thread), so sockets and netlink calls made there belong to that namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import TypeVar

import pytest

from announcer.loopback import Loopback, LoopbackError

pytestmark = pytest.mark.netns

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
VIP4 = IPv4Network("198.51.100.10/32")
VIP6 = IPv6Network("2001:db8:100::10/128")
ROUTER4, NODE4 = "10.99.0.1", "10.99.0.2"
ROUTER6, NODE6 = "fd99::1", "fd99::2"

if os.geteuid() != 0 and not os.environ.get("ANNOUNCER_REQUIRE_NETNS"):
    pytest.skip("needs root for network namespaces", allow_module_level=True)


@dataclass(frozen=True)
class Lab:
    router: str
    node: str


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def lab() -> Iterator[Lab]:
    names = Lab(router=f"lb-test-{os.getpid()}-r", node=f"lb-test-{os.getpid()}-n")
    try:
        for ns in (names.router, names.node):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", names.router, "link", "add", "lbt-r", "type", "veth", "peer", "lbt-n")
        ip("-n", names.router, "link", "set", "lbt-n", "netns", names.node)
        for ns, dev, v4, v6 in (
            (names.router, "lbt-r", ROUTER4, ROUTER6),
            (names.node, "lbt-n", NODE4, NODE6),
        ):
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", names.router, "route", "add", str(VIP4), "via", NODE4)
        ip("-n", names.router, "-6", "route", "add", str(VIP6), "via", NODE6)
        yield names
    finally:
        for ns in (names.router, names.node):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def in_netns(name: str, work: Callable[[], T]) -> T:
    """Run `work` on a thread inside network namespace `name`; return or raise its result."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)
        try:
            outcome.append(work())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def run_in(name: str, work: Callable[[], Coroutine[object, object, T]]) -> T:
    return in_netns(name, lambda: asyncio.run(work()))


def lo_addresses(ns: str) -> dict[str, dict[str, object]]:
    links = json.loads(ip("-n", ns, "-j", "addr", "show", "dev", "lo"))
    return {
        f"{info['local']}/{info['prefixlen']}": info for link in links for info in link["addr_info"]
    }


def test_ensure_present_and_absent_are_idempotent(lab: Lab) -> None:
    loopback = Loopback("lo")

    async def body() -> list[object]:
        return [
            await loopback.missing([VIP4, VIP6]),
            await loopback.ensure_present(VIP4),
            await loopback.ensure_present(VIP4),
            await loopback.ensure_present(VIP6),
            await loopback.ensure_present(VIP6),
            await loopback.missing([VIP6, VIP4]),
            await loopback.is_present(VIP4),
        ]

    assert run_in(lab.node, body) == [[VIP4, VIP6], True, False, True, False, [], True]
    on_lo = lo_addresses(lab.node)
    assert on_lo[str(VIP4)]["scope"] == "host"
    assert on_lo[str(VIP6)].get("nodad") is True
    assert on_lo[str(VIP6)].get("tentative") is None

    async def remove() -> list[object]:
        return [
            await loopback.ensure_absent(VIP4),
            await loopback.ensure_absent(VIP4),
            await loopback.ensure_absent(VIP6),
            await loopback.ensure_absent(VIP6),
            await loopback.missing([VIP4, VIP6]),
        ]

    assert run_in(lab.node, remove) == [True, False, True, False, [VIP4, VIP6]]
    assert set(lo_addresses(lab.node)) == {"127.0.0.1/8", "::1/128"}


def test_missing_notices_a_vip_deleted_by_hand(lab: Lab) -> None:
    loopback = Loopback("lo")
    assert run_in(lab.node, lambda: loopback.ensure_present(VIP4)) is True
    ip("-n", lab.node, "addr", "del", str(VIP4), "dev", "lo")
    assert run_in(lab.node, lambda: loopback.missing([VIP4])) == [VIP4]


def test_an_address_with_another_prefix_length_does_not_count(lab: Lab) -> None:
    ip("-n", lab.node, "addr", "add", "198.51.100.10/24", "dev", "lo")
    loopback = Loopback("lo")
    assert run_in(lab.node, lambda: loopback.missing([VIP4])) == [VIP4]
    assert run_in(lab.node, lambda: loopback.ensure_present(VIP4)) is True
    assert run_in(lab.node, lambda: loopback.ensure_absent(VIP4)) is True
    assert "198.51.100.10/24" in lo_addresses(lab.node)


def serve_once(sock: socket.socket) -> tuple[str, str]:
    """Accept one connection; return (the address it reached, the peer's address)."""
    conn, peer = sock.accept()
    with conn:
        return conn.getsockname()[0], peer[0]


def listener(family: socket.AddressFamily, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((host, 0))
    sock.listen()
    return sock


def connect(family: socket.AddressFamily, dest: tuple[str, int], source: str | None) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        if source is not None:
            sock.bind((source, 0))
        sock.connect(dest)
        return str(sock.getsockname()[0])


@pytest.mark.parametrize(
    ("vip", "family", "any_host"),
    [(VIP4, socket.AF_INET, "0.0.0.0"), (VIP6, socket.AF_INET6, "::")],  # noqa: S104
)
def test_routed_traffic_reaches_the_vip_on_lo(
    lab: Lab, vip: IPv4Network | IPv6Network, family: socket.AddressFamily, any_host: str
) -> None:
    assert run_in(lab.node, lambda: Loopback("lo").ensure_present(vip))
    server = in_netns(lab.node, lambda: listener(family, any_host))
    with server:
        port = server.getsockname()[1]
        address = str(vip.network_address)
        client = threading.Thread(
            target=in_netns, args=(lab.router, lambda: connect(family, (address, port), None))
        )
        client.start()
        reached, peer = serve_once(server)
        client.join()
    assert reached == address
    assert peer in (ROUTER4, ROUTER6)


@pytest.mark.parametrize(
    ("vip", "family", "router", "any_host"),
    [
        (VIP4, socket.AF_INET, ROUTER4, "0.0.0.0"),  # noqa: S104
        (VIP6, socket.AF_INET6, ROUTER6, "::"),
    ],
)
def test_the_vip_on_lo_works_as_a_source_address(
    lab: Lab,
    vip: IPv4Network | IPv6Network,
    family: socket.AddressFamily,
    router: str,
    any_host: str,
) -> None:
    assert run_in(lab.node, lambda: Loopback("lo").ensure_present(vip))
    server = in_netns(lab.router, lambda: listener(family, any_host))
    with server:
        port = server.getsockname()[1]
        source = str(vip.network_address)
        client = threading.Thread(
            target=in_netns, args=(lab.node, lambda: connect(family, (router, port), source))
        )
        client.start()
        _, peer = serve_once(server)
        client.join()
    assert peer == source


def test_errors_are_translated_once(lab: Lab) -> None:
    with pytest.raises(LoopbackError, match="interface nope0 does not exist"):
        run_in(lab.node, lambda: Loopback("nope0").ensure_present(VIP4))
    with pytest.raises(LoopbackError, match="not a VIP host prefix"):
        run_in(lab.node, lambda: Loopback("lo").ensure_present(ip_network("198.51.100.0/24")))
    # IPv6 disabled on the interface: the kernel refuses, the error names what and where
    ip("netns", "exec", lab.node, "sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1")
    with pytest.raises(LoopbackError, match=r"cannot add 2001:db8:100::10/128 to lo: E"):
        run_in(lab.node, lambda: Loopback("lo").ensure_present(VIP6))

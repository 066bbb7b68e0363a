"""The VIPs on the loopback interface: netlink, through pyroute2's asyncio API.

It owns adding, removing and looking for a VIP's host address (/32 or /128) on one interface,
idempotently, and translating netlink's errors once into `LoopbackError`. It must not decide
when a VIP belongs on the interface (the daemon does: added before the announce, removed after
the withdraw has settled) nor touch any other address.

Addresses are added the way that was measured to work (netns, a router namespace routing the
VIP over a veth to this one):
- IPv4 with scope host: routed traffic to the VIP is received and answered from it all the
  same, and the kernel never picks a host-scope address as the source of the node's own
  outgoing traffic, which would break whenever the VIP is withdrawn.
- IPv6 with IFA_F_NODAD: usable at once (bind, receive, source replies), no tentative phase.

To notice someone deleting a VIP by hand, the daemon calls `missing()` on a timer and puts
back what should be there.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator, Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Final

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from announcer.config.model import IPAddress, VipNetwork

__all__ = ["Loopback", "LoopbackError"]

_SCOPE_HOST: Final = 254  # RT_SCOPE_HOST
_IFA_F_NODAD: Final = 0x02


class LoopbackError(OSError):
    """An address could not be read, added or removed; the message says which and why."""


class Loopback:
    """The VIPs' host addresses on `interface`, in the calling thread's network namespace.

    Each call opens its own netlink socket: calls are rare (a VIP changes state, or the
    daemon's periodic `missing()` check), and nothing is left open between them.
    """

    def __init__(self, interface: str = "lo") -> None:
        self._interface = interface

    @property
    def interface(self) -> str:
        return self._interface

    async def ensure_present(self, vip: VipNetwork) -> bool:
        """Add `vip`'s address unless it is there; True if it was added."""
        _check(vip)
        async with self._netlink(f"add {vip} to") as ipr:
            index = await self._index(ipr)
            try:
                await ipr.addr("add", index=index, **_attributes(vip))
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    return False
                raise
        return True

    async def ensure_absent(self, vip: VipNetwork) -> bool:
        """Remove `vip`'s address if it is there; True if it was removed."""
        _check(vip)
        async with self._netlink(f"remove {vip} from") as ipr:
            index = await self._index(ipr)
            address = str(vip.network_address)
            try:
                await ipr.addr("del", index=index, address=address, prefixlen=vip.prefixlen)
            except NetlinkError as exc:
                if exc.code == errno.EADDRNOTAVAIL:
                    return False
                raise
        return True

    async def is_present(self, vip: VipNetwork) -> bool:
        return not await self.missing([vip])

    async def missing(self, vips: Iterable[VipNetwork]) -> list[VipNetwork]:
        """Those of `vips` whose address is not on the interface, in the order given."""
        wanted = list(vips)
        for vip in wanted:
            _check(vip)
        async with self._netlink("read the addresses of") as ipr:
            present = await self._addresses(ipr, await self._index(ipr))
        return [vip for vip in wanted if (vip.network_address, vip.prefixlen) not in present]

    @contextlib.asynccontextmanager
    async def _netlink(self, doing: str) -> AsyncIterator[AsyncIPRoute]:
        try:
            async with AsyncIPRoute() as ipr:
                yield ipr
        except LoopbackError:
            raise
        except NetlinkError as exc:
            reason = errno.errorcode.get(exc.code, str(exc.code))
            raise LoopbackError(exc.code, f"cannot {doing} {self._interface}: {reason}") from exc
        except OSError as exc:
            raise LoopbackError(exc.errno, f"cannot {doing} {self._interface}: {exc}") from exc

    async def _index(self, ipr: AsyncIPRoute) -> int:
        found = await ipr.link_lookup(ifname=self._interface)
        if not found:
            raise LoopbackError(errno.ENODEV, f"interface {self._interface} does not exist")
        return int(found[0])

    async def _addresses(self, ipr: AsyncIPRoute, index: int) -> set[tuple[IPAddress, int]]:
        present: set[tuple[IPAddress, int]] = set()
        async for message in await ipr.addr("dump", index=index):
            if int(message["index"]) != index:
                continue  # older kernels ignore the filter
            raw = message.get("IFA_LOCAL") or message.get("IFA_ADDRESS")
            if raw is not None:
                present.add((ip_address(str(raw)), int(message["prefixlen"])))
        return present


def _check(vip: object) -> None:
    # Only host routes ever go on the interface, whatever a caller passes.
    if not isinstance(vip, IPv4Network | IPv6Network) or vip.prefixlen != vip.max_prefixlen:
        raise LoopbackError(errno.EINVAL, f"not a VIP host prefix: {vip!r}")


def _attributes(vip: VipNetwork) -> dict[str, object]:
    attributes: dict[str, object] = {
        "address": str(vip.network_address),
        "prefixlen": vip.prefixlen,
    }
    if vip.version == 4:
        attributes["scope"] = _SCOPE_HOST
    else:
        attributes["flags"] = _IFA_F_NODAD
    return attributes

"""The VIPs on the loopback interface, over rtnetlink (`announcer.rtnetlink`).

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
back what should be there: one dump of the interface's addresses on the one kept socket, a
few microseconds of the kernel's time and a few `struct` calls of ours.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network, IPv6Network
from typing import Final

from announcer.config.model import VipNetwork
from announcer.rtnetlink import NetlinkError, Rtnetlink

__all__ = ["Loopback", "LoopbackError"]

_SCOPE_HOST: Final = 254  # RT_SCOPE_HOST
_IFA_F_NODAD: Final = 0x02


class LoopbackError(OSError):
    """An address could not be read, added or removed; the message says which and why."""


class Loopback:
    """The VIPs' host addresses on `interface`, in the network namespace of the thread that
    first uses it (its one netlink socket is opened then and kept)."""

    def __init__(self, interface: str = "lo") -> None:
        self._interface = interface
        self._netlink = Rtnetlink()

    @property
    def interface(self) -> str:
        return self._interface

    def close(self) -> None:
        self._netlink.close()

    async def ensure_present(self, vip: VipNetwork) -> bool:
        """Add `vip`'s address unless it is there; True if it was added."""
        _check(vip)
        with self._errors(f"add {vip} to"):
            scope, flags = (_SCOPE_HOST, 0) if vip.version == 4 else (0, _IFA_F_NODAD)
            try:
                self._netlink.add(
                    vip.network_address,
                    vip.prefixlen,
                    index=self._index(),
                    scope=scope,
                    flags=flags,
                )
            except NetlinkError as exc:
                if exc.errno == errno.EEXIST:
                    return False
                raise
        return True

    async def ensure_absent(self, vip: VipNetwork) -> bool:
        """Remove `vip`'s address if it is there; True if it was removed."""
        _check(vip)
        with self._errors(f"remove {vip} from"):
            try:
                self._netlink.delete(vip.network_address, vip.prefixlen, index=self._index())
            except NetlinkError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
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
        with self._errors("read the addresses of"):
            present = {(a.address, a.prefixlen) for a in self._netlink.dump(self._index())}
        return [vip for vip in wanted if (vip.network_address, vip.prefixlen) not in present]

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except LoopbackError:
            raise
        except OSError as exc:
            code = exc.errno or errno.EIO
            reason = errno.errorcode.get(code, str(code))
            raise LoopbackError(code, f"cannot {doing} {self._interface}: {reason}") from exc

    def _index(self) -> int:
        try:
            return socket.if_nametoindex(self._interface)
        except OSError:
            raise LoopbackError(
                errno.ENODEV, f"interface {self._interface} does not exist"
            ) from None


def _check(vip: object) -> None:
    # Only host routes ever go on the interface, whatever a caller passes.
    if not isinstance(vip, IPv4Network | IPv6Network) or vip.prefixlen != vip.max_prefixlen:
        raise LoopbackError(errno.EINVAL, f"not a VIP host prefix: {vip!r}")

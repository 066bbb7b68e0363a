"""The routes this node should announce, and their ExaBGP API lines.

It owns two pure steps: `desired_routes` (configuration + health + lifecycle phase -> the set
of `Route`s) and the rendering of one route into one `neighbor ... announce|withdraw route`
line. Prefixes come from `config.vips` and nowhere else, and the renderer refuses anything
that is not a host route to a plain address, or any line that is not made of the few
characters an API line needs: guarantee 4 ("nothing but the configured VIPs") and "one
command per line" hold even if a bad value got past configuration parsing.

It must not do I/O, keep state or know what ExaBGP has installed (that is
`announcer.core`).

ExaBGP 5 notes (see the reference measurements): every line names its neighbor, since an
unqualified one can half-apply; `next-hop self` cannot give an IPv6 next hop over an IPv4
session, so those routes carry the neighbor's `next_hop_ipv6`; the AS path is sent verbatim,
so a prepend lists our own AS first (1 + prepend times) and no prepend sends no AS path
attribute at all (ExaBGP then adds our AS itself). A withdraw repeats the announce's
next hop: ExaBGP keys its RIB by prefix alone, but resolves `self` on withdraws too, which
fails for IPv6 over an IPv4 session.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final, TypeAlias

from announcer.config import Community, Config, Family, LargeCommunity, NeighborConfig
from announcer.config.model import GRACEFUL_SHUTDOWN, IPAddress, VipNetwork
from announcer.lifecycle import Lifecycle

__all__ = [
    "GRACEFUL_SHUTDOWN_COMMUNITY",
    "Phase",
    "Route",
    "RouteError",
    "RouteKey",
    "desired_routes",
    "phase_of",
    "render_announce",
    "render_withdraw",
    "sort_key",
]

RouteKey: TypeAlias = tuple[IPAddress, VipNetwork]

GRACEFUL_SHUTDOWN_COMMUNITY: Final = Community(GRACEFUL_SHUTDOWN)
_U32: Final = 0xFFFFFFFF
# Everything an API line may contain: words, addresses, numbers, brackets, single spaces.
_LINE: Final = re.compile(r"[A-Za-z0-9.:/\[\]-]+(?: [A-Za-z0-9.:/\[\]-]+)*")


class RouteError(ValueError):
    """A route that must not be rendered (never reaches ExaBGP)."""


class Phase(enum.Enum):
    """What the lifecycle asks of the routes."""

    NORMAL = "normal"  # announce with the configured attributes
    GRACEFUL = "graceful"  # drain/stop, first phase: announce, but unattractive
    WITHDRAWN = "withdrawn"  # announce nothing


_PHASES: Final = {
    Lifecycle.RUNNING: Phase.NORMAL,
    Lifecycle.DRAINING: Phase.GRACEFUL,
    Lifecycle.STOPPING: Phase.GRACEFUL,
    Lifecycle.DRAINED: Phase.WITHDRAWN,
    Lifecycle.STOPPED: Phase.WITHDRAWN,
}


def phase_of(lifecycle: Lifecycle) -> Phase:
    return _PHASES[lifecycle]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One VIP announced to one neighbor; `next_hop` None means `next-hop self`.

    A route is identified by `key` (neighbor, prefix): announcing a route with the same key
    and other attributes replaces the path in ExaBGP.
    """

    neighbor: IPAddress
    prefix: VipNetwork
    next_hop: IPAddress | None = None
    communities: tuple[Community, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    med: int | None = None
    as_path: tuple[int, ...] = ()

    @property
    def key(self) -> RouteKey:
        return (self.neighbor, self.prefix)


def sort_key(route: Route) -> tuple[int, int, int, int]:
    """A stable order for routes: by neighbor, then prefix (IPv4 before IPv6)."""
    neighbor, prefix = route.neighbor, route.prefix.network_address
    return (neighbor.version, int(neighbor), prefix.version, int(prefix))


def desired_routes(config: Config, *, announceable: bool, phase: Phase) -> frozenset[Route]:
    """Every VIP to every neighbor whose families include the VIP's, or nothing."""
    if not announceable or phase is Phase.WITHDRAWN:
        return frozenset()
    graceful = phase is Phase.GRACEFUL
    communities = config.announce.communities
    if graceful and config.drain.graceful_shutdown:
        communities = (*communities, GRACEFUL_SHUTDOWN_COMMUNITY)
    prepend = config.announce.as_path_prepend + (config.drain.as_path_prepend if graceful else 0)
    as_path = (config.bgp.local_as,) * (1 + prepend) if prepend else ()
    return frozenset(
        Route(
            neighbor=neighbor.address,
            prefix=vip,
            next_hop=_next_hop(neighbor, vip),
            communities=tuple(dict.fromkeys(communities)),
            large_communities=config.announce.large_communities,
            med=config.announce.med,
            as_path=as_path,
        )
        for vip in config.vips
        for neighbor in config.bgp.neighbors
        if Family.of(vip) in neighbor.families
    )


def _next_hop(neighbor: NeighborConfig, vip: VipNetwork) -> IPAddress | None:
    if vip.version == 4:
        return None
    if neighbor.next_hop_ipv6 is not None:
        return neighbor.next_hop_ipv6
    if neighbor.address.version == 6:
        return None
    # configuration parsing rejects this; a hand-built Config could still hold it
    raise RouteError(f"{vip} to {neighbor.address}: IPv6 over IPv4 needs next_hop_ipv6")


def render_announce(route: Route) -> str:
    """`neighbor N announce route P next-hop H [community [..]] [large-community [..]]
    [med M] [as-path [..]]`; raises `RouteError` for a route that must not be sent."""
    parts = [_head(route, "announce")]
    if route.communities:
        parts.append(_list("community", (_community(c) for c in route.communities)))
    if route.large_communities:
        parts.append(_list("large-community", (_large(c) for c in route.large_communities)))
    if route.med is not None:
        parts.append(f"med {_u32(route.med, 'med')}")
    if route.as_path:
        parts.append(_list("as-path", (str(_asn(asn)) for asn in route.as_path)))
    return _checked(" ".join(parts))


def render_withdraw(route: Route) -> str:
    """`neighbor N withdraw route P next-hop H`; raises `RouteError` like `render_announce`."""
    return _checked(_head(route, "withdraw"))


def _head(route: Route, action: str) -> str:
    next_hop = "self" if route.next_hop is None else _address(route.next_hop, "next hop")
    neighbor = _address(route.neighbor, "neighbor")
    return f"neighbor {neighbor} {action} route {_prefix(route.prefix)} next-hop {next_hop}"


def _prefix(prefix: object) -> str:
    if not isinstance(prefix, IPv4Network | IPv6Network):
        raise RouteError(f"not an IP prefix: {prefix!r}")
    if prefix.prefixlen != prefix.max_prefixlen:
        raise RouteError(f"not a host route (/32 or /128): {prefix}")
    return f"{_address(prefix.network_address, 'prefix')}/{prefix.prefixlen}"


def _address(address: object, what: str) -> str:
    if not isinstance(address, IPv4Address | IPv6Address):
        raise RouteError(f"{what} is not an IP address: {address!r}")
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        raise RouteError(f"{what} has a zone index: {address}")
    return str(address)


def _community(community: object) -> str:
    if not isinstance(community, Community):
        raise RouteError(f"not a community: {community!r}")
    _u32(community.value, "community")
    return community.numeric  # digits only, even for the well-known names


def _large(community: object) -> str:
    if not isinstance(community, LargeCommunity):
        raise RouteError(f"not a large community: {community!r}")
    parts = (community.global_admin, community.local1, community.local2)
    return ":".join(str(_u32(part, "large community")) for part in parts)


def _asn(asn: int) -> int:
    if _u32(asn, "AS number") == 0:
        raise RouteError("AS number 0 in the AS path")
    return asn


def _u32(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32:
        raise RouteError(f"{what} is not a 32-bit unsigned integer: {value!r}")
    return value


def _list(name: str, items: Iterable[str]) -> str:
    return f"{name} [{' '.join(items)}]"


def _checked(line: str) -> str:
    # Defence in depth: a line break or control character would start a second command.
    if not line.isascii() or not _LINE.fullmatch(line):
        raise RouteError(f"refusing to send a malformed API line: {line!r}")
    return line

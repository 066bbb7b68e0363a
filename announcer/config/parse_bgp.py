"""Parsing the `bgp` and `announce` sections: sessions and the attributes sent with the VIPs.

Must not: read the password files (that is `load`), or render anything for ExaBGP.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Final

from announcer.config import fields
from announcer.config.errors import ConfigError
from announcer.config.fields import Section
from announcer.config.model import (
    BLACKHOLE,
    DEFAULT_BGP_PORT,
    DEFAULT_HOLD_TIME,
    GRACEFUL_SHUTDOWN,
    WELL_KNOWN_COMMUNITIES,
    AnnounceConfig,
    BfdConfig,
    BgpConfig,
    Community,
    Family,
    IPAddress,
    LargeCommunity,
    NeighborConfig,
)
from announcer.config.parse_bfd import parse_neighbor_bfd

# Stand-ins for required values that are missing or wrong: never in a returned Config.
_PLACEHOLDER_ROUTER_ID: Final = IPv4Address("192.0.2.0")
_PLACEHOLDER_ADDRESS: Final[IPAddress] = _PLACEHOLDER_ROUTER_ID
_NO_ENTRIES: Final[list[tuple[str, object]]] = []
_COMMUNITY: Final = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_LARGE_COMMUNITY: Final = re.compile(r"([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,10})")
_U32: Final = 0xFFFFFFFF
_BASE60_HINT: Final = "(YAML reads unquoted 65000:59 as a base-60 number: quote communities)"
MAX_PREPEND: Final = 10


def hold_time(value: object, path: str) -> int:
    # RFC 4271: zero (no keepalives) or at least three seconds; ExaBGP rejects 1 and 2.
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 0 or 3 <= value <= 0xFFFF)
    ):
        raise ConfigError(path, "is not a hold time (0, or 3..65535 seconds)", value=value)
    return value


def family(value: object, path: str) -> Family:
    if value not in ("ipv4", "ipv6"):
        raise ConfigError(path, "is not a family (ipv4 or ipv6)", value=value)
    return Family(value)


def families(value: object, path: str) -> tuple[Family, ...]:
    found = fields.each_item(value, path, family, repeated="is listed twice")
    if not found:
        raise ConfigError(path, "is empty: list ipv4, ipv6 or both", value=value)
    return tuple(sorted(found, key=lambda item: item.value))


def parse_bgp(
    data: object, errors: list[ConfigError], *, bfd: BfdConfig | None = None
) -> BgpConfig:
    """The `bgp` section; `bfd` is the top-level profile the neighbors' `bfd` keys override."""
    section = Section(data, "bgp", errors)
    router_id = section.require("router_id", fields.ipv4_address, _PLACEHOLDER_ROUTER_ID)
    local_as = section.require("local_as", fields.as_number, 1)
    default_hold_time = section.take("hold_time", hold_time, DEFAULT_HOLD_TIME)
    entries = section.require("neighbors", fields.items, _NO_ENTRIES)
    if section.has("neighbors") and section.fine("neighbors") and not entries:
        section.reject("neighbors", ConfigError(section.at("neighbors"), "is empty: add one"))
    neighbors = _neighbors(entries, default_hold_time, errors, bfd or BfdConfig())
    section.finish()
    return BgpConfig(
        router_id=router_id,
        local_as=local_as,
        hold_time=default_hold_time,
        neighbors=tuple(neighbors),
    )


def _neighbors(
    entries: list[tuple[str, object]],
    default_hold_time: int,
    errors: list[ConfigError],
    bfd: BfdConfig,
) -> list[NeighborConfig]:
    neighbors: list[NeighborConfig] = []
    first_seen: dict[IPAddress, str] = {}
    for path, data in entries:
        neighbor = _neighbor(data, path, default_hold_time, errors, bfd)
        if neighbor is None:
            continue
        if neighbor.address in first_seen:
            where = f"{path}.address"
            errors.append(
                ConfigError(
                    where, f"repeats {first_seen[neighbor.address]}", value=str(neighbor.address)
                )
            )
        first_seen.setdefault(neighbor.address, f"{path}.address")
        neighbors.append(neighbor)
    return neighbors


def _neighbor(
    data: object, path: str, default_hold_time: int, errors: list[ConfigError], bfd: BfdConfig
) -> NeighborConfig | None:
    if not isinstance(data, dict):
        errors.append(ConfigError(path, "is not a mapping", value=data))
        return None
    section = Section(data, path, errors)
    take, optional = section.take, fields.optional
    address = section.require("address", fields.address, _PLACEHOLDER_ADDRESS)
    peer_as = section.require("peer_as", fields.as_number, 1)
    local_address = take("local_address", optional(fields.address), None)
    own_hold_time = take("hold_time", optional(hold_time), None)
    password_file = take("password_file", optional(fields.absolute_path), None)
    ttl_security = take("ttl_security", fields.boolean, False)
    multihop = take("multihop", optional(fields.integer_in(1, 255)), None)
    own_families = take("families", optional(families), None)
    neighbor = NeighborConfig(
        address=address,
        peer_as=peer_as,
        local_address=local_address,
        hold_time=default_hold_time if own_hold_time is None else own_hold_time,
        password_file=password_file,
        ttl_security=ttl_security,
        multihop=multihop,
        families=(Family.of(address),) if own_families is None else own_families,
        next_hop_ipv6=take("next_hop_ipv6", optional(fields.ipv6_address), None),
        port=take("port", fields.integer_in(1, 65535), DEFAULT_BGP_PORT),
        bfd=parse_neighbor_bfd(section.raw("bfd"), section.at("bfd"), bfd, errors),
    )
    _check_neighbor(section, neighbor)
    section.finish()
    return neighbor


def _check_neighbor(section: Section, neighbor: NeighborConfig) -> None:
    if not section.fine("address"):
        return
    session = Family.of(neighbor.address)
    local = neighbor.local_address
    if local is not None and section.fine("local_address") and Family.of(local) != session:
        reason = f"is {Family.of(local).value} but address is {session.value}"
        section.reject("local_address", _error(section, "local_address", reason))
    if neighbor.bfd.enabled and local is None and section.fine("local_address", "bfd"):
        reason = (
            f"is required for neighbor {neighbor.address} because bfd is enabled "
            "(BFD sends from this address and the router checks it)"
        )
        section.reject("local_address", ConfigError(section.at("local_address"), reason))
    if neighbor.ttl_security and neighbor.multihop is not None and section.fine("multihop"):
        reason = "cannot be combined with ttl_security (GTSM means directly connected)"
        section.reject("multihop", _error(section, "multihop", reason))
    if not section.fine("families", "next_hop_ipv6"):
        return
    if session is Family.IPV6 and Family.IPV4 in neighbor.families:
        reason = "carries ipv4 over an IPv6 session, which next-hop self cannot do"
        section.reject("families", _error(section, "families", reason))
    needs_next_hop = session is Family.IPV4 and Family.IPV6 in neighbor.families
    if needs_next_hop and neighbor.next_hop_ipv6 is None:
        reason = "is required: ipv6 routes over an IPv4 session need an explicit IPv6 next hop"
        section.reject("next_hop_ipv6", ConfigError(section.at("next_hop_ipv6"), reason))
    elif not needs_next_hop and neighbor.next_hop_ipv6 is not None:
        reason = "is only used for ipv6 routes over an IPv4 session"
        section.reject("next_hop_ipv6", _error(section, "next_hop_ipv6", reason))


def _error(section: Section, key: str, reason: str) -> ConfigError:
    return ConfigError(section.at(key), reason, value=section.raw(key))


def community(value: object, path: str) -> Community:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(path, f"is not a community {_BASE60_HINT}", value=value)
    raw = fields.text(value, path)
    if raw in WELL_KNOWN_COMMUNITIES:
        number = WELL_KNOWN_COMMUNITIES[raw]
    elif (match := _COMMUNITY.fullmatch(raw)) and max(int(match[1]), int(match[2])) <= 0xFFFF:
        number = int(match[1]) << 16 | int(match[2])
    elif raw == "blackhole":
        number = BLACKHOLE
    else:
        names = ", ".join(WELL_KNOWN_COMMUNITIES)
        raise ConfigError(path, f"is not a community (a:b with 0..65535, or {names})", value=value)
    if number == BLACKHOLE:
        raise ConfigError(path, "is BLACKHOLE: routers would drop the VIP's traffic", value=value)
    if number == GRACEFUL_SHUTDOWN:
        reason = "is GRACEFUL_SHUTDOWN: drain.graceful_shutdown adds it while draining only"
        raise ConfigError(path, reason, value=value)
    return Community(number)


def large_community(value: object, path: str) -> LargeCommunity:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(path, f"is not a large community {_BASE60_HINT}", value=value)
    match = _LARGE_COMMUNITY.fullmatch(fields.text(value, path))
    parts = [int(part) for part in match.groups()] if match else []
    if not parts or max(parts) > _U32:
        reason = "is not a large community (a:b:c, each 0..4294967295)"
        raise ConfigError(path, reason, value=value)
    return LargeCommunity(parts[0], parts[1], parts[2])


def _unique_list(convert: fields.Convert[fields.T]) -> fields.Convert[tuple[fields.T, ...]]:
    def convert_list(value: object, path: str) -> tuple[fields.T, ...]:
        return tuple(fields.each_item(value, path, convert, repeated="is listed twice"))

    return convert_list


def parse_announce(data: object, errors: list[ConfigError]) -> AnnounceConfig:
    section, default = Section(data, "announce", errors), AnnounceConfig()
    announce = AnnounceConfig(
        communities=section.take("communities", _unique_list(community), default.communities),
        large_communities=section.take(
            "large_communities", _unique_list(large_community), default.large_communities
        ),
        med=section.take("med", fields.optional(fields.integer_in(0, _U32)), default.med),
        as_path_prepend=section.take(
            "as_path_prepend", fields.integer_in(0, MAX_PREPEND), default.as_path_prepend
        ),
    )
    section.finish()
    return announce

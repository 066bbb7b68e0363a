"""Brief links (`endpoints: ["a:eth1", "b:eth1"]`) as containerlab reads them from
`topology.links`, for the lab realiser.

Owns: Endpoint and Link, the checks on each link (exactly two endpoints, each `node:interface`
with a node that `topology.nodes` defines, no endpoint used twice) and the endpoint count
message that `announcer.lab.clabschema` shares. Every error is a TopologyError naming the key
path and the bad value.

Must not: create or look at interfaces (the realiser does) or know more of a node than its name.

Ignored, because without containers they cannot change what the lab does: link `labels` and
`vars`. Rejected as not supported by the lab realiser: typed (extended) links, link
`mtu`/`ipv4`/`ipv6` and the special link nodes host/mgmt-net/macvlan. Stricter than
containerlab: `eth0` (its management interface) cannot be a link endpoint, and interface names
must be real Linux names (containerlab would fall back to an altname).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from announcer.lab.clabfile import (
    TopologyError,
    at,
    check_keys,
    describe,
    expect_mapping,
    expect_text,
    expect_texts,
)

_SPECIAL_NODES = ("host", "mgmt-net", "macvlan")


@dataclass(frozen=True, slots=True)
class Endpoint:
    node: str
    interface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True, slots=True)
class Link:
    a: Endpoint
    b: Endpoint


def endpoint_count_message(count: int) -> str:
    """containerlab: "endpoint definition should consist of exactly 2 entries"."""
    return f"expected exactly 2 endpoints, got {count}"


def parse_links(value: object, nodes: Container[str]) -> tuple[Link, ...]:
    """`topology.links`; `nodes` are the names of the defined nodes."""
    if value is not None and not isinstance(value, list):
        raise TopologyError(f"topology.links: expected a list, got {describe(value)}")
    used: dict[Endpoint, str] = {}
    links = []
    for index, item in enumerate(value or ()):
        path = at("topology.links", index)
        raw = expect_mapping(item, path)
        check_keys(raw, path, {"endpoints", "type"}, {"labels", "vars"}, {"mtu", "ipv4", "ipv6"})
        link_type = expect_text(raw.get("type"), at(path, "type"))
        if link_type not in ("", "brief"):
            raise TopologyError(
                f"{at(path, 'type')}: {link_type!r} links are not supported by the lab"
                ' realiser (only brief links: endpoints: ["a:eth1", "b:eth1"])'
            )
        texts = expect_texts(raw.get("endpoints"), at(path, "endpoints"))
        if len(texts) != 2:
            raise TopologyError(f"{at(path, 'endpoints')}: {endpoint_count_message(len(texts))}")
        endpoints = [(_endpoint(text, ep_path, nodes), ep_path) for ep_path, text in texts]
        for endpoint, ep_path in endpoints:
            if endpoint in used:
                raise TopologyError(
                    f"{ep_path}: {str(endpoint)!r} is already used by {used[endpoint]}"
                )
            used[endpoint] = ep_path
        links.append(Link(endpoints[0][0], endpoints[1][0]))
    return tuple(links)


def _endpoint(text: str, path: str, nodes: Container[str]) -> Endpoint:
    node, colon, interface = text.partition(":")
    if not colon:
        raise TopologyError(f"{path}: {text!r} is not of the form node:interface")
    if node.strip().lower() in _SPECIAL_NODES:
        raise TopologyError(
            f"{path}: {text!r}: the special node {node!r} is not supported by the lab realiser"
        )
    if node not in nodes:
        raise TopologyError(f"{path}: {text!r}: node {node!r} is not defined in topology.nodes")
    if not _is_interface_name(interface):
        raise TopologyError(
            f"{path}: {text!r}: {interface!r} is not a Linux interface name (1-15 bytes, no '/',"
            " ':' or whitespace, not '.' or '..')"
        )
    if interface == "eth0":
        raise TopologyError(
            f"{path}: {text!r}: eth0 is containerlab's management interface; use eth1, eth2, ..."
        )
    return Endpoint(node, interface)


def _is_interface_name(name: str) -> bool:
    """The kernel's dev_valid_name()."""
    raw = name.encode()
    return (
        0 < len(raw) < 16 and name not in (".", "..") and not set(raw) & set(b"/: \t\n\v\f\r\xa0\0")
    )

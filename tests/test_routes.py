"""Desired routes and their ExaBGP lines.

The rendered lines of whole configurations are compared with golden files under
tests/golden/routes/; regenerate them with `ANNOUNCER_UPDATE_GOLDEN=1 pytest tests/test_routes.py`
and review the diff.
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from announcer.config import Community, Config, LargeCommunity, parse_config
from announcer.lifecycle import Lifecycle
from announcer.routes import (
    Phase,
    Route,
    RouteError,
    desired_routes,
    phase_of,
    render_announce,
    render_withdraw,
    sort_key,
)

GOLDEN = Path(__file__).parent / "golden" / "routes"
UPDATE = os.environ.get("ANNOUNCER_UPDATE_GOLDEN") == "1"

SINGLE: dict[str, object] = {
    "vips": ["198.51.100.10/32"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
    },
}

DUAL_STACK: dict[str, object] = {
    "vips": ["198.51.100.10/32", "198.51.100.11/32", "2001:db8:100::10/128"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [
            {
                "address": "192.0.2.1",
                "peer_as": 65000,
                "families": ["ipv4", "ipv6"],
                "next_hop_ipv6": "2001:db8::2",
            },
            {"address": "2001:db8:1::1", "peer_as": 65000},
            {"address": "192.0.2.5", "peer_as": 65001},
        ],
    },
    "announce": {
        "communities": ["65000:123", "no-export"],
        "large_communities": ["65000:1:2"],
        "med": 10,
        "as_path_prepend": 1,
    },
}


def config(document: dict[str, object], **sections: dict[str, object]) -> Config:
    data = copy.deepcopy(document)
    data.update(sections)
    return parse_config(data)


def rendered(routes: frozenset[Route]) -> str:
    ordered = sorted(routes, key=sort_key)
    lines = [render_announce(r) for r in ordered] + [render_withdraw(r) for r in ordered]
    return "".join(f"{line}\n" for line in lines)


GOLDEN_CASES = {
    "single-normal": (config(SINGLE), True, Phase.NORMAL),
    "single-graceful": (config(SINGLE), True, Phase.GRACEFUL),
    "single-not-announceable": (config(SINGLE), False, Phase.NORMAL),
    "dual-stack-normal": (config(DUAL_STACK), True, Phase.NORMAL),
    "dual-stack-graceful": (config(DUAL_STACK), True, Phase.GRACEFUL),
    "dual-stack-withdrawn": (config(DUAL_STACK), True, Phase.WITHDRAWN),
    "graceful-prepend-only": (
        config(SINGLE, drain={"graceful_shutdown": False, "as_path_prepend": 2}),
        True,
        Phase.GRACEFUL,
    ),
    "graceful-community-only": (
        config(SINGLE, drain={"graceful_shutdown": True, "as_path_prepend": 0}),
        True,
        Phase.GRACEFUL,
    ),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_rendered_lines_match_the_golden_file(case: str) -> None:
    cfg, announceable, phase = GOLDEN_CASES[case]
    text = rendered(desired_routes(cfg, announceable=announceable, phase=phase))
    path = GOLDEN / f"{case}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"regenerate with ANNOUNCER_UPDATE_GOLDEN=1 and review {path}"


def test_golden_directory_has_no_stale_files() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(GOLDEN_CASES)


def test_the_example_line_renders_exactly() -> None:
    route = Route(
        neighbor=IPv4Address("192.0.2.1"),
        prefix=IPv4Network("198.51.100.10/32"),
        communities=(Community(65000 << 16 | 123), Community(0xFFFF0000)),
        large_communities=(LargeCommunity(65000, 1, 2),),
        med=10,
        as_path=(65100, 65100),
    )
    assert render_announce(route) == (
        "neighbor 192.0.2.1 announce route 198.51.100.10/32 next-hop self "
        "community [65000:123 65535:0] large-community [65000:1:2] med 10 as-path [65100 65100]"
    )
    assert render_withdraw(route) == (
        "neighbor 192.0.2.1 withdraw route 198.51.100.10/32 next-hop self"
    )


@pytest.mark.parametrize(
    ("lifecycle", "phase"),
    [
        (Lifecycle.RUNNING, Phase.NORMAL),
        (Lifecycle.DRAINING, Phase.GRACEFUL),
        (Lifecycle.STOPPING, Phase.GRACEFUL),
        (Lifecycle.DRAINED, Phase.WITHDRAWN),
        (Lifecycle.STOPPED, Phase.WITHDRAWN),
    ],
)
def test_phase_of_lifecycle(lifecycle: Lifecycle, phase: Phase) -> None:
    assert phase_of(lifecycle) is phase


def test_each_vip_goes_to_the_neighbors_of_its_family() -> None:
    routes = desired_routes(config(DUAL_STACK), announceable=True, phase=Phase.NORMAL)
    keys = {(str(r.neighbor), str(r.prefix)) for r in routes}
    assert keys == {
        ("192.0.2.1", "198.51.100.10/32"),
        ("192.0.2.1", "198.51.100.11/32"),
        ("192.0.2.1", "2001:db8:100::10/128"),
        ("2001:db8:1::1", "2001:db8:100::10/128"),
        ("192.0.2.5", "198.51.100.10/32"),
        ("192.0.2.5", "198.51.100.11/32"),
    }
    assert len({r.key for r in routes}) == len(routes)


def test_ipv6_over_an_ipv4_session_uses_the_configured_next_hop() -> None:
    routes = desired_routes(config(DUAL_STACK), announceable=True, phase=Phase.NORMAL)
    hops = {(str(r.neighbor), r.prefix.version): r.next_hop for r in routes}
    assert hops[("192.0.2.1", 6)] == IPv6Address("2001:db8::2")
    assert hops[("192.0.2.1", 4)] is None
    assert hops[("2001:db8:1::1", 6)] is None
    route = next(r for r in routes if str(r.neighbor) == "192.0.2.1" and r.prefix.version == 6)
    assert render_withdraw(route) == (
        "neighbor 192.0.2.1 withdraw route 2001:db8:100::10/128 next-hop 2001:db8::2"
    )


def test_ipv6_over_ipv4_without_a_next_hop_is_refused() -> None:
    cfg = config(DUAL_STACK)
    neighbor = replace(cfg.bgp.neighbors[0], next_hop_ipv6=None)
    broken = replace(cfg, bgp=replace(cfg.bgp, neighbors=(neighbor,)))
    with pytest.raises(RouteError, match="needs next_hop_ipv6"):
        desired_routes(broken, announceable=True, phase=Phase.NORMAL)


def test_as_path_is_absent_without_prepend_and_starts_with_our_as() -> None:
    normal = desired_routes(config(SINGLE), announceable=True, phase=Phase.NORMAL)
    assert {r.as_path for r in normal} == {()}
    graceful = desired_routes(config(DUAL_STACK), announceable=True, phase=Phase.GRACEFUL)
    # announce.as_path_prepend 1 + drain.as_path_prepend 3 (the default), after our own AS
    assert {r.as_path for r in graceful} == {(65100,) * 5}


def test_graceful_adds_the_community_once_after_the_configured_ones() -> None:
    routes = desired_routes(config(DUAL_STACK), announceable=True, phase=Phase.GRACEFUL)
    assert {tuple(str(c) for c in r.communities) for r in routes} == {
        ("65000:123", "no-export", "65535:0")
    }
    off = config(DUAL_STACK, drain={"graceful_shutdown": False})
    routes = desired_routes(off, announceable=True, phase=Phase.GRACEFUL)
    assert {tuple(str(c) for c in r.communities) for r in routes} == {("65000:123", "no-export")}


def test_nothing_is_desired_when_not_announceable_or_withdrawn() -> None:
    cfg = config(DUAL_STACK)
    for phase in Phase:
        assert desired_routes(cfg, announceable=False, phase=phase) == frozenset()
    assert desired_routes(cfg, announceable=True, phase=Phase.WITHDRAWN) == frozenset()


@given(
    vips=st.lists(
        st.one_of(
            st.integers(0, 2**32 - 1).map(lambda n: f"{IPv4Address(n)}/32"),
            st.integers(0, 2**128 - 1).map(lambda n: f"{IPv6Address(n)}/128"),
        ),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    phase=st.sampled_from(Phase),
)
def test_only_configured_prefixes_are_ever_rendered(vips: list[str], phase: Phase) -> None:
    document = copy.deepcopy(DUAL_STACK)
    document["vips"] = vips
    try:
        cfg = parse_config(document)
    except ValueError:
        return  # e.g. an address the configuration refuses as a VIP
    routes = desired_routes(cfg, announceable=True, phase=phase)
    assert {r.prefix for r in routes} <= set(cfg.vips)
    for route in routes:
        for line in (render_announce(route), render_withdraw(route)):
            assert f" route {route.prefix} next-hop " in line
            assert line.count(" route ") == 1


BASE = Route(neighbor=IPv4Address("192.0.2.1"), prefix=IPv4Network("198.51.100.10/32"))


class EvilAddress(IPv4Address):
    def __str__(self) -> str:
        return "192.0.2.1 announce route 0.0.0.0/0 next-hop self\nneighbor 192.0.2.1"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (replace(BASE, prefix=IPv4Network("198.51.100.0/24")), "not a host route"),
        (replace(BASE, prefix=IPv6Network("2001:db8::/64")), "not a host route"),
        (replace(BASE, prefix="198.51.100.10/32\nneighbor x"), "not an IP prefix"),  # type: ignore[arg-type]
        (replace(BASE, neighbor="192.0.2.1 "), "neighbor is not an IP address"),  # type: ignore[arg-type]
        (replace(BASE, next_hop=ip_address("fe80::1%eth0")), "next hop has a zone index"),
        (replace(BASE, communities=("65000:1",)), "not a community"),  # type: ignore[arg-type]
        (replace(BASE, communities=(Community(2**32),)), "community is not a 32-bit"),
        (replace(BASE, large_communities=(LargeCommunity(-1, 0, 0),)), "large community"),
        (replace(BASE, med=-1), "med is not a 32-bit"),
        (replace(BASE, med=True), "med is not a 32-bit"),
        (replace(BASE, as_path=(0,)), "AS number 0"),
        (replace(BASE, as_path=(2**32,)), "AS number is not a 32-bit"),
        (replace(BASE, neighbor=EvilAddress("192.0.2.1")), "malformed API line"),
    ],
)
def test_the_renderer_refuses_what_must_not_reach_exabgp(route: Route, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        render_announce(route)
    if "community" not in message and "med" not in message and "AS" not in message:
        with pytest.raises(RouteError, match=message):
            render_withdraw(route)


def test_sort_key_orders_ipv4_before_ipv6_and_by_number() -> None:
    routes = [
        replace(BASE, neighbor=ip_address("2001:db8::1")),
        replace(BASE, neighbor=ip_address("192.0.2.10"), prefix=ip_network("198.51.100.9/32")),
        replace(BASE, neighbor=ip_address("192.0.2.10")),
        replace(BASE, neighbor=ip_address("192.0.2.9")),
    ]
    assert [(str(r.neighbor), str(r.prefix)) for r in sorted(routes, key=sort_key)] == [
        ("192.0.2.9", "198.51.100.10/32"),
        ("192.0.2.10", "198.51.100.9/32"),
        ("192.0.2.10", "198.51.100.10/32"),
        ("2001:db8::1", "198.51.100.10/32"),
    ]

"""Configuration mistakes: a snippet laid over a valid document gives exactly one message."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from announcer.config import ConfigError, ConfigErrors, parse_config

SNIPPETS = Path(__file__).parent / "config_snippets"
NEIGHBOR = "address: 192.0.2.1, peer_as: 65000"


def minimal() -> dict[str, object]:
    document = yaml.safe_load((SNIPPETS / "minimal.yaml").read_text())
    assert isinstance(document, dict)
    return document


def merged(base: object, patch: object) -> object:
    """`base` with `patch` laid over it: mappings merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        result = copy.deepcopy(base)
        for key, value in patch.items():
            result[key] = merged(result[key], value) if key in result else value
        return result
    return copy.deepcopy(patch)


def messages(snippet: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(merged(minimal(), yaml.safe_load(snippet)))
    return [str(error) for error in caught.value.errors]


CASES: list[tuple[str, str]] = [
    # apiserver
    ("apiserver: {rise: 0}", "apiserver.rise: 0 is not an integer in 1..100"),
    ("apiserver: {fall: true}", "apiserver.fall: true is not an integer in 1..100"),
    ("apiserver: {rise: 2.0}", "apiserver.rise: 2.0 is not an integer in 1..100"),
    (
        "apiserver: {timeout: 0.5}",
        "apiserver.timeout: 0.5 is not below apiserver.interval (0.4)",
    ),
    (
        "apiserver: {interval: 0.3}",
        "apiserver.interval: 0.3 is not above the default timeout (0.35): set timeout too",
    ),
    (
        "apiserver: {fast_interval: 0.4}",
        "apiserver.fast_interval: 0.4 is not below apiserver.interval (0.4)",
    ),
    (
        "apiserver: {fast_interval: 0}",
        "apiserver.fast_interval: 0 is not a number of seconds above 0 up to 60",
    ),
    (
        "apiserver: {interval: 0.08, timeout: 0.05, fast_interval: 0.1}",
        "apiserver.fast_interval: 0.1 is not below apiserver.interval (0.08)",
    ),
    (
        "apiserver: {interval: 0}",
        "apiserver.interval: 0 is not a number of seconds above 0 up to 60",
    ),
    (
        "apiserver: {interval: .nan}",
        "apiserver.interval: nan is not a number of seconds above 0 up to 60",
    ),
    (
        "apiserver: {min_healthy: -1}",
        "apiserver.min_healthy: -1 is not a number of seconds from 0 to 3600",
    ),
    (
        "apiserver: {url: 'http://127.0.0.1:6443'}",
        "apiserver.url: 'http://127.0.0.1:6443' is not an https:// URL with a host",
    ),
    (
        "apiserver: {url: 'https://127.0.0.1:6443/?x=1'}",
        "apiserver.url: 'https://127.0.0.1:6443/?x=1' has a query or fragment: give the base URL",
    ),
    (
        "apiserver: {server_name: 'kube rnetes'}",
        "apiserver.server_name: 'kube rnetes' is not a DNS name or IP address",
    ),
    (
        "apiserver: {client_cert_file: /etc/c.pem}",
        "apiserver.client_key_file: is required with apiserver.client_cert_file",
    ),
    (
        "apiserver: {token_file: token}",
        "apiserver.token_file: 'token' is not an absolute path",
    ),
    (
        "apiserver: {ca_file: null}",
        "apiserver.ca_file: null is not a string",
    ),
    (
        "apiserver: [1]",
        "apiserver: [1] is not a mapping",
    ),
    # vips
    ("vips: [198.51.100.0/24]", "vips[0]: '198.51.100.0/24' is not a /32 or /128"),
    ("vips: [198.51.100.10/32, 198.51.100.10]", "vips[1]: '198.51.100.10' repeats vips[0]"),
    (
        "vips: ['2001:db8:100::10/128']",
        "vips[0]: '2001:db8:100::10/128' is ipv6 but no neighbor carries ipv6",
    ),
    ("vips: []", "vips: [] is empty: list at least one VIP"),
    ("vips: 198.51.100.10/32", "vips: '198.51.100.10/32' is not a list"),
    ("vips: [127.0.0.1]", "vips[0]: '127.0.0.1' is not a usable VIP (global or private unicast)"),
    ("vips: [vip.example]", "vips[0]: 'vip.example' is not an IP address or prefix"),
    # bgp
    ("bgp: {router_id: '2001:db8::1'}", "bgp.router_id: '2001:db8::1' is not an IPv4 address"),
    ("bgp: {router_id: 0.0.0.0}", "bgp.router_id: '0.0.0.0' is not a unicast address"),
    ("bgp: {local_as: 4294967296}", "bgp.local_as: 4294967296 is not an AS number"),
    ("bgp: {local_as: 0}", "bgp.local_as: 0 is not an AS number"),
    (
        "bgp: {local_as: 1.10}",
        'bgp.local_as: 1.1 is not an AS number (quote asdot numbers: "1.10")',
    ),
    ("bgp: {hold_time: 2}", "bgp.hold_time: 2 is not a hold time (0, or 3..65535 seconds)"),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}}}, {{address: 192.0.2.3, peer_as: abc}}]}}",
        "bgp.neighbors[1].peer_as: 'abc' is not an AS number",
    ),
    ("bgp: {neighbors: [{address: 192.0.2.1}]}", "bgp.neighbors[0].peer_as: is required"),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}}}, {{{NEIGHBOR}}}]}}",
        "bgp.neighbors[1].address: '192.0.2.1' repeats bgp.neighbors[0].address",
    ),
    ("bgp: {neighbors: []}", "bgp.neighbors: is empty: add one"),
    ("bgp: {neighbors: [192.0.2.1]}", "bgp.neighbors[0]: '192.0.2.1' is not a mapping"),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, local_address: '2001:db8:1::2'}}]}}",
        "bgp.neighbors[0].local_address: '2001:db8:1::2' is ipv6 but address is ipv4",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, ttl_security: true, multihop: 2}}]}}",
        "bgp.neighbors[0].multihop: 2 cannot be combined with ttl_security "
        "(GTSM means directly connected)",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, multihop: 256}}]}}",
        "bgp.neighbors[0].multihop: 256 is not an integer in 1..255",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, families: [ipv4, ipv6]}}]}}",
        "bgp.neighbors[0].next_hop_ipv6: is required: ipv6 routes over an IPv4 session need "
        "an explicit IPv6 next hop",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, next_hop_ipv6: '2001:db8:1::2'}}]}}",
        "bgp.neighbors[0].next_hop_ipv6: '2001:db8:1::2' is only used for ipv6 routes over an "
        "IPv4 session",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, families: [ipv4, ipv5]}}]}}",
        "bgp.neighbors[0].families[1]: 'ipv5' is not a family (ipv4 or ipv6)",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, families: []}}]}}",
        "bgp.neighbors[0].families: [] is empty: list ipv4, ipv6 or both",
    ),
    (
        "{vips: ['2001:db8:100::10/128'], bgp: {neighbors: "
        "[{address: '2001:db8:1::1', peer_as: 65000, families: [ipv4, ipv6]}]}}",
        "bgp.neighbors[0].families: ['ipv4', 'ipv6'] carries ipv4 over an IPv6 session, "
        "which next-hop self cannot do",
    ),
    (
        f"bgp: {{neighbors: [{{address: 'fe80::1%eth0', peer_as: 65000}}, {{{NEIGHBOR}}}]}}",
        "bgp.neighbors[0].address: 'fe80::1%eth0' has a zone index; use a global address",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, port: 0}}]}}",
        "bgp.neighbors[0].port: 0 is not an integer in 1..65535",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, password: secret}}]}}",
        "bgp.neighbors[0].password: unknown key (expected: address, bfd, families, hold_time, "
        "local_address, multihop, next_hop_ipv6, password_file, peer_as, port, ttl_security)",
    ),
    (
        f"bgp: {{neighbors: [{{{NEIGHBOR}, ttl_security: 'yes'}}]}}",
        "bgp.neighbors[0].ttl_security: 'yes' is not true or false",
    ),
    # announce
    (
        "announce: {communities: ['65535:666']}",
        "announce.communities[0]: '65535:666' is BLACKHOLE: routers would drop the VIP's traffic",
    ),
    (
        "announce: {communities: [blackhole]}",
        "announce.communities[0]: 'blackhole' is BLACKHOLE: routers would drop the VIP's traffic",
    ),
    (
        "announce: {communities: ['65535:0']}",
        "announce.communities[0]: '65535:0' is GRACEFUL_SHUTDOWN: drain.graceful_shutdown adds "
        "it while draining only",
    ),
    (
        "announce: {communities: [65000:59]}",
        "announce.communities[0]: 3900059 is not a community (YAML reads unquoted 65000:59 as a "
        "base-60 number: quote communities)",
    ),
    (
        "announce: {communities: ['65000:70000']}",
        "announce.communities[0]: '65000:70000' is not a community (a:b with 0..65535, or "
        "no-export, no-advertise, no-export-subconfed, nopeer)",
    ),
    (
        "announce: {communities: [no-export, no-export]}",
        "announce.communities[1]: 'no-export' is listed twice",
    ),
    (
        'announce: {communities: ["65000:1\\nwithdraw"]}',
        "announce.communities[0]: '65000:1\\nwithdraw' contains the control character '\\n'",
    ),
    (
        "announce: {large_communities: ['65000:1']}",
        "announce.large_communities[0]: '65000:1' is not a large community "
        "(a:b:c, each 0..4294967295)",
    ),
    ("announce: {med: -1}", "announce.med: -1 is not an integer in 0..4294967295"),
    ("announce: {as_path_prepend: 11}", "announce.as_path_prepend: 11 is not an integer in 0..10"),
    # drain, loopback, status, state_dir
    ("drain: {delay: 3s}", "drain.delay: '3s' is not a number of seconds from 0 to 300"),
    ("drain: {graceful_shutdown: null}", "drain.graceful_shutdown: null is not true or false"),
    (
        "loopback: {interface: a-very-long-name0}",
        "loopback.interface: 'a-very-long-name0' is not an interface name "
        "(1..15 of A-Z a-z 0-9 _ . @ -)",
    ),
    (
        "status: {mode: 0600}",
        'status.mode: 384 is not a quoted octal string like "0600" (YAML reads 0600 as 384)',
    ),
    (
        "status: {mode: '0666'}",
        "status.mode: '0666' is world-writable: any local user could drain this node",
    ),
    (
        "status: {socket: /run/" + "x" * 110 + "}",
        "status.socket: '/run/" + "x" * 32 + "..." + "x" * 38 + "' is longer than 107 bytes",
    ),
    ("state_dir: var/lib/announcer", "state_dir: 'var/lib/announcer' is not an absolute path"),
    # exabgp, metrics
    ("exabgp: {user: root}", "exabgp.user: 'root' is root: ExaBGP runs unprivileged"),
    (
        "exabgp: {heartbeat_timeout: 0.1}",
        "exabgp.heartbeat_timeout: 0.1 is not a number of seconds from 0.5 to 30",
    ),
    (
        "exabgp: {settings: {api.respawn: false}}",
        "exabgp.settings['api.respawn']: is set by the daemon: routes are withdrawn when the "
        "daemon dies only because ExaBGP respawns",
    ),
    (
        "exabgp: {settings: {tcp.bind: 0.0.0.0}}",
        "exabgp.settings['tcp.bind']: is refused: would make ExaBGP listen for BGP "
        "connections: the node only connects out",
    ),
    (
        "exabgp: {settings: {bgp.passive: true}}",
        "exabgp.settings['bgp.passive']: is refused: would make every session passive: this "
        "node opens none",
    ),
    (
        "exabgp: {settings: {tcp.delay: 5}}",
        "exabgp.settings['tcp.delay']: is refused: would hold every announcement back until "
        "the minute is a multiple of it",
    ),
    (
        "exabgp: {settings: {log.level: LOUD}}",
        "exabgp.settings['log.level']: 'LOUD' is not a log level (FATAL, CRITICAL, ERROR, "
        "WARNING, INFO, DEBUG, NOTSET)",
    ),
    (
        "exabgp: {settings: {log.packets: yes please}}",
        "exabgp.settings['log.packets']: 'yes please' is not true or false",
    ),
    ("log: {format: xml}", "log.format: 'xml' is not a log format (text or json)"),
    (
        "exabgp: {settings: {exabgp.reactor.speed: 5}}",
        "exabgp.settings['exabgp.reactor.speed']: 'exabgp.reactor.speed' is not an ExaBGP "
        "setting name (section.option, without exabgp.)",
    ),
    (
        "exabgp: {settings: {reactor.speed: [5]}}",
        "exabgp.settings['reactor.speed']: [5] is not a number of seconds from 0.1 to 10",
    ),
    (
        'exabgp: {settings: {log.destination: "syslog\\rapi"}}',
        "exabgp.settings['log.destination']: 'syslog\\rapi' contains the control character '\\r'",
    ),
    (
        "metrics: {listen: 'localhost:9470'}",
        "metrics.listen: 'localhost:9470' is not HOST:PORT or [HOST]:PORT",
    ),
    (
        "metrics: {listen: '[::1]:70000'}",
        "metrics.listen: '[::1]:70000' has a port outside 1..65535",
    ),
    # the top level
    (
        "apisever: {}",
        "apisever: unknown key (expected: announce, apiserver, bfd, bgp, drain, exabgp, log, "
        "loopback, metrics, state_dir, status, vips)",
    ),
    (
        "{1: x}",
        "[1]: unknown key (expected: announce, apiserver, bfd, bgp, drain, exabgp, log, "
        "loopback, metrics, state_dir, status, vips)",
    ),
]


@pytest.mark.parametrize(("snippet", "message"), CASES, ids=[case[1][:60] for case in CASES])
def test_mistake_gives_exactly_its_message(snippet: str, message: str) -> None:
    assert messages(snippet) == [message]


def test_there_are_many_distinct_mistakes() -> None:
    assert len({message for _, message in CASES}) == len(CASES) >= 20


def test_every_mistake_is_reported_in_document_order() -> None:
    document = merged(
        minimal(),
        yaml.safe_load("{apiserver: {rise: 0}, bgp: {local_as: x}, drain: {delay: -1}, foo: 1}"),
    )
    with pytest.raises(ConfigErrors) as caught:
        parse_config(document)
    assert [error.path for error in caught.value.errors] == [
        "apiserver.rise",
        "bgp.local_as",
        "drain.delay",
        "foo",
    ]
    assert caught.value.path == "apiserver.rise"
    assert str(caught.value).splitlines()[1] == "bgp.local_as: 'x' is not an AS number"


@pytest.mark.parametrize(
    ("snippet", "paths"),
    [
        ("vips: [bad, 198.51.100.10/32, worse, 198.51.100.10]", ["vips[0]", "vips[2]", "vips[3]"]),
        (
            "announce: {communities: ['65000:1', x, y, '65000:1']}",
            ["announce.communities[1]", "announce.communities[2]", "announce.communities[3]"],
        ),
        (
            "announce: {large_communities: [x, '1:2:3', y]}",
            ["announce.large_communities[0]", "announce.large_communities[2]"],
        ),
        (
            "bgp: {neighbors: [{address: 192.0.2.1, peer_as: 65000, families: [ipv4, x, y]}]}",
            ["bgp.neighbors[0].families[1]", "bgp.neighbors[0].families[2]"],
        ),
        (
            "exabgp: {settings: {tcp.bind: x, no.such: 1, log.all: maybe}}",
            [
                "exabgp.settings['tcp.bind']",
                "exabgp.settings['no.such']",
                "exabgp.settings['log.all']",
            ],
        ),
    ],
)
def test_every_mistake_in_a_list_is_reported(snippet: str, paths: list[str]) -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(merged(minimal(), yaml.safe_load(snippet)))
    assert [error.path for error in caught.value.errors] == paths


def test_an_unknown_exabgp_setting_is_refused() -> None:
    (message,) = messages("exabgp: {settings: {no.such: 1}}")
    assert message.startswith(
        "exabgp.settings['no.such']: is not an ExaBGP setting the daemon allows (allowed: "
    )
    assert "reactor.speed" in message


def test_missing_required_sections() -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config({})
    assert [str(error) for error in caught.value.errors] == [
        "vips: is required",
        "bgp: is required",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "(top level): the document is empty"),
        ([1, 2], "(top level): [1, 2] is not a mapping of sections"),
        ("text", "(top level): 'text' is not a mapping of sections"),
    ],
)
def test_top_level_must_be_a_mapping(document: object, message: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(document)
    assert [str(error) for error in caught.value.errors] == [message]


def test_huge_integers_are_described_not_printed() -> None:
    document = merged(minimal(), {"bgp": {"local_as": 10**5000}})
    with pytest.raises(ConfigErrors) as caught:
        parse_config(document)
    assert str(caught.value) == "bgp.local_as: <integer of 16610 bits> is not an AS number"


def test_a_wrong_related_value_does_not_cause_a_second_error() -> None:
    # interval is wrong: timeout cannot be compared with it, so only one error.
    assert messages("apiserver: {interval: -1, timeout: 0.5}") == [
        "apiserver.interval: -1 is not a number of seconds above 0 up to 60"
    ]
    # a broken neighbor: the VIP family check is skipped rather than misleading.
    assert messages("bgp: {neighbors: [{address: x, peer_as: 1}]}") == [
        "bgp.neighbors[0].address: 'x' is not an IP address"
    ]

"""Valid configurations: defaults, the example file, the effective configuration."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path

import pytest
import yaml

from announcer.config import (
    DEFAULT_PATH,
    AnnounceConfig,
    ApiserverConfig,
    Community,
    Config,
    DrainConfig,
    ExabgpConfig,
    Family,
    LargeCommunity,
    ListenAddress,
    LoopbackConfig,
    MetricsConfig,
    StatusConfig,
    parse_config,
    read_document,
    render_effective,
)

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config" / "announcer.example.yaml"
SNIPPETS = Path(__file__).parent / "config_snippets"
KEY_LINE = re.compile(r"\s*(- )?[a-z_]+:")


def load(name: str) -> object:
    return yaml.safe_load((SNIPPETS / name).read_text())


@pytest.mark.parametrize(
    ("apiserver", "fast"),
    [
        ({}, 0.1),
        ({"interval": 0.1, "timeout": 0.05}, 0.05),
        ({"interval": 2.0, "timeout": 1.0}, 0.1),
        ({"interval": 0.1, "timeout": 0.05, "fast_interval": 0.02}, 0.02),
    ],
)
def test_fast_interval_defaults_to_a_tenth_of_a_second_or_half_a_shorter_interval(
    apiserver: dict[str, float], fast: float
) -> None:
    document = load("minimal.yaml")
    assert isinstance(document, dict)
    config = parse_config({**document, "apiserver": apiserver})
    assert config.apiserver.fast_interval == fast


def test_minimal_document_gets_every_default() -> None:
    config = parse_config(load("minimal.yaml"))
    assert config.apiserver == ApiserverConfig(
        url="https://127.0.0.1:6443",
        ca_file=Path("/etc/kubernetes/pki/ca.crt"),
        server_name="kubernetes",
        interval=0.4,
        timeout=0.35,
        fast_interval=0.1,
        rise=3,
        fall=2,
        min_healthy=2.0,
    )
    assert config.vips == (ip_network("198.51.100.10/32"),)
    assert config.bgp.router_id == IPv4Address("192.0.2.2")
    assert config.bgp.local_as == 65100
    assert config.bgp.hold_time == 9
    (neighbor,) = config.bgp.neighbors
    assert neighbor.address == IPv4Address("192.0.2.1")
    assert (neighbor.peer_as, neighbor.hold_time, neighbor.port) == (65000, 9, 179)
    assert neighbor.families == (Family.IPV4,)
    assert (neighbor.local_address, neighbor.password_file, neighbor.multihop) == (None,) * 3
    assert neighbor.ttl_security is False
    assert config.announce == AnnounceConfig(
        communities=(), large_communities=(), med=None, as_path_prepend=0
    )
    assert config.drain == DrainConfig(
        graceful_shutdown=True, as_path_prepend=3, delay=3.0, withdraw_wait=1.0
    )
    assert config.loopback == LoopbackConfig(manage=True, interface="lo")
    assert config.status == StatusConfig(
        socket=Path("/run/announcer/status.sock"), mode=0o600, group=None
    )
    assert config.state_dir == Path("/var/lib/announcer")
    assert config.exabgp == ExabgpConfig(
        binary=Path(sys.prefix) / "bin" / "exabgp",
        user="exabgp",
        heartbeat_timeout=2.0,
        settings=(),
    )
    assert config.metrics == MetricsConfig(listen=None)
    assert Path("/etc/announcer/config.yaml") == DEFAULT_PATH


def test_explicit_values_are_kept_and_resolved() -> None:
    config = parse_config(load("dual-stack.yaml"))
    assert config.bgp.local_as == 65546  # asdot "1.10"
    first, second = config.bgp.neighbors
    assert first.hold_time == 0  # an explicit 0 is not "unset"
    assert first.families == (Family.IPV4, Family.IPV6)
    assert first.next_hop_ipv6 == IPv6Address("2001:db8:1::2")
    assert (second.hold_time, second.peer_as, second.multihop, second.port) == (
        3,
        4200000000,
        2,
        1179,
    )
    assert second.families == (Family.IPV6,)
    assert config.announce.communities == (Community(65000 << 16 | 123), Community(0xFFFFFF01))
    assert [str(c) for c in config.announce.communities] == ["65000:123", "no-export"]
    assert config.announce.communities[1].numeric == "65535:65281"
    assert config.announce.large_communities == (LargeCommunity(65000, 1, 2),)
    assert (config.announce.med, config.announce.as_path_prepend) == (10, 1)
    assert config.status.mode == 0o660
    assert dict(config.exabgp.settings) == {
        "reactor.speed": 5,
        "log.statistics": False,
        "bgp.openwait": 30,
        "log.destination": "syslog",
    }
    assert config.metrics.listen == ListenAddress(host=IPv6Address("::1"), port=9470)
    assert str(config.metrics.listen) == "[::1]:9470"


def test_bare_vip_address_means_the_host_route() -> None:
    document = load("minimal.yaml")
    assert isinstance(document, dict)
    document["vips"] = ["198.51.100.10"]
    assert parse_config(document).vips == (ip_network("198.51.100.10/32"),)


def test_a_section_with_every_key_commented_out_is_all_defaults() -> None:
    document = load("minimal.yaml")
    assert isinstance(document, dict)
    document["drain"] = None
    assert parse_config(document).drain == DrainConfig()


def test_configuration_is_frozen_and_hashable() -> None:
    config = parse_config(load("dual-stack.yaml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.apiserver.rise = 1  # type: ignore[misc]
    assert hash(config) == hash(parse_config(load("dual-stack.yaml")))


@pytest.mark.parametrize("name", ["minimal.yaml", "dual-stack.yaml"])
def test_effective_configuration_round_trips(name: str) -> None:
    config = parse_config(load(name))
    text = render_effective(config)
    assert parse_config(yaml.safe_load(text)) == config
    assert render_effective(parse_config(yaml.safe_load(text))) == text


def test_effective_configuration_shows_defaults() -> None:
    text = render_effective(parse_config(load("minimal.yaml")))
    document = yaml.safe_load(text)
    assert document["apiserver"]["timeout"] == 0.35
    assert document["bgp"]["neighbors"][0]["families"] == ["ipv4"]
    assert document["status"]["mode"] == "0600"
    assert document["exabgp"]["binary"] == str(Path(sys.prefix) / "bin" / "exabgp")
    assert text.startswith("# announcer: effective configuration")


def _section(hint: object) -> tuple[type, str] | None:
    """The configuration section class a field holds, and how its keys continue."""
    if isinstance(hint, type) and hint.__name__.endswith("Config"):
        return hint, "."
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and isinstance(args[0], type):
        return (args[0], "[].") if args[0].__name__.endswith("Config") else None
    return None


def _model_keys(cls: type, prefix: str) -> set[str]:
    keys = set()
    for name, hint in typing.get_type_hints(cls).items():
        keys.add(prefix + name)
        section = _section(hint)
        if section is not None:
            keys |= _model_keys(section[0], prefix + name + section[1])
    return keys


def _document_keys(document: object, prefix: str) -> set[str]:
    keys = set()
    if isinstance(document, dict):
        for key, value in document.items():
            path = f"{prefix}{key}"
            keys.add(path)
            if key != "settings":  # a free-form mapping: its keys are data
                keys |= _document_keys(value, f"{path}.")
    elif isinstance(document, list):
        for item in document:
            if isinstance(item, dict):
                keys |= _document_keys(item, f"{prefix.removesuffix('.')}[].")
    return keys


def test_example_documents_exactly_the_model_keys() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    assert _document_keys(document, "") == _model_keys(Config, "")


def test_example_comments_every_key() -> None:
    lines = EXAMPLE.read_text().splitlines()
    # The second neighbor only shows that several are allowed.
    second = next(n for n, line in enumerate(lines) if "- address: 2001:db8:1::1" in line)
    undocumented = [
        line
        for number, line in enumerate(lines)
        if KEY_LINE.match(line)
        and number not in (second, second + 1)
        and not lines[number - 1].strip().removeprefix("- ").startswith("#")
    ]
    assert undocumented == []


def test_example_parses_to_the_defaults() -> None:
    config = parse_config(read_document(EXAMPLE))
    assert config.apiserver == ApiserverConfig()
    assert config.announce == AnnounceConfig()
    assert config.drain == DrainConfig()
    assert config.status == StatusConfig()
    assert config.exabgp == ExabgpConfig()
    assert {family for n in config.bgp.neighbors for family in n.families} == set(Family)


def test_the_package_imports_no_file_or_host_io_until_asked() -> None:
    code = (
        "import sys\n"
        "import announcer.config as c\n"
        "from announcer.config import Config, ConfigError\n"
        "before = sorted(m for m in ('yaml', 'pyroute2', 'announcer.config.load',"
        " 'announcer.config.hostcheck') if m in sys.modules)\n"
        "c.load_config\n"
        "print(before, 'yaml' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[] True"

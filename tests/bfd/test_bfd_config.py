"""The `bfd` keys: defaults, per-neighbor overrides over the top-level section, and every
mistake named by path and value."""

from __future__ import annotations

import pytest
import yaml

from announcer.bfd import Profile
from announcer.config import ConfigError, parse_config, render_effective
from announcer.config.model import BfdConfig

BASE = """
vips: [198.51.100.10/32]
bgp:
  router_id: 192.0.2.2
  local_as: 65100
  neighbors:
    - {address: 192.0.2.1, peer_as: 65000, local_address: 192.0.2.2, NEIGHBOR}
    - {address: 192.0.2.5, peer_as: 65000, local_address: 192.0.2.6}
"""


def document(top: str = "", neighbor: str = "") -> object:
    text = BASE.replace(", NEIGHBOR", f", bfd: {{{neighbor}}}" if neighbor else "")
    return yaml.safe_load(text + (f"bfd: {{{top}}}\n" if top else ""))


def test_defaults_are_off_at_300_ms_times_3() -> None:
    config = parse_config(document())
    assert config.bfd == BfdConfig(
        enabled=False, transmit_interval=0.3, receive_interval=0.3, detect_multiplier=3
    )
    assert all(neighbor.bfd == config.bfd for neighbor in config.bgp.neighbors)


def test_a_neighbor_overrides_key_by_key_and_null_inherits() -> None:
    config = parse_config(
        document(
            top="enabled: true, transmit_interval: 0.1, detect_multiplier: 4",
            neighbor="enabled: false, receive_interval: 0.05, transmit_interval: null",
        )
    )
    first, second = config.bgp.neighbors
    assert first.bfd == BfdConfig(
        enabled=False, transmit_interval=0.1, receive_interval=0.05, detect_multiplier=4
    )
    assert second.bfd == config.bfd


def test_the_effective_configuration_parses_back_to_the_same() -> None:
    config = parse_config(document(top="enabled: true", neighbor="detect_multiplier: 10"))
    assert parse_config(yaml.safe_load(render_effective(config))) == config


def test_a_profile_in_microseconds() -> None:
    assert Profile.from_seconds(transmit=0.3, receive=0.01, multiplier=3) == Profile(
        transmit_interval=300_000, receive_interval=10_000, detect_multiplier=3
    )


@pytest.mark.parametrize(
    ("top", "neighbor", "message"),
    [
        ("enabled: 'yes'", "", "bfd.enabled: 'yes' is not true or false"),
        (
            "transmit_interval: 0.009",
            "",
            "bfd.transmit_interval: 0.009 is not a number of seconds from 0.01 to 60",
        ),
        (
            "receive_interval: 61",
            "",
            "bfd.receive_interval: 61 is not a number of seconds from 0.01 to 60",
        ),
        (
            "transmit_interval: 300ms",
            "",
            "bfd.transmit_interval: '300ms' is not a number of seconds from 0.01 to 60",
        ),
        ("detect_multiplier: 1", "", "bfd.detect_multiplier: 1 is not an integer in 2..255"),
        ("detect_multiplier: 256", "", "bfd.detect_multiplier: 256 is not an integer in 2..255"),
        ("detect_multiplier: 2.5", "", "bfd.detect_multiplier: 2.5 is not an integer in 2..255"),
        (
            "interval: 1",
            "",
            "bfd.interval: unknown key (expected: detect_multiplier, enabled, "
            "receive_interval, transmit_interval)",
        ),
        ("", "enabled: 1", "bgp.neighbors[0].bfd.enabled: 1 is not true or false"),
        (
            "",
            "receive_interval: 0",
            "bgp.neighbors[0].bfd.receive_interval: 0 is not a number of seconds from 0.01 to 60",
        ),
        (
            "",
            "detect_multiplier: true",
            "bgp.neighbors[0].bfd.detect_multiplier: true is not an integer in 2..255",
        ),
        (
            "",
            "echo: true",
            "bgp.neighbors[0].bfd.echo: unknown key (expected: "
            "detect_multiplier, enabled, receive_interval, transmit_interval)",
        ),
    ],
)
def test_mistakes_name_path_and_value(top: str, neighbor: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document(top=top, neighbor=neighbor))
    assert [str(error) for error in caught.value.errors] == [message]


def test_a_section_that_is_not_a_mapping() -> None:
    data = document()
    assert isinstance(data, dict)
    data["bfd"] = [1]
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert [str(error) for error in caught.value.errors] == ["bfd: [1] is not a mapping"]


def test_bfd_needs_the_local_address_and_the_error_names_the_neighbor() -> None:
    text = BASE.replace(", local_address: 192.0.2.6", "").replace(", NEIGHBOR", "")
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_load(text + "bfd: {enabled: true}\n"))
    assert str(caught.value) == (
        "bgp.neighbors[1].local_address: is required for neighbor 192.0.2.5 because bfd is "
        "enabled (BFD sends from this address and the router checks it)"
    )
    off = text + "bfd: {enabled: true}\n"
    off = off.replace(
        "{address: 192.0.2.5, peer_as: 65000}",
        "{address: 192.0.2.5, peer_as: 65000, bfd: {enabled: false}}",
    )
    assert parse_config(yaml.safe_load(off)).bgp.neighbors[1].local_address is None

"""Parsing the `bfd` section and each neighbor's `bfd` overrides (`bgp.neighbors[i].bfd`).

The top-level section sets the profile of every neighbor's BFD session; a neighbor's own keys
override it one by one (null or absent: the top-level value), so `NeighborConfig.bfd` is the
resolved profile. The ranges are FRR's (`bfdd`): intervals 10 ms..60 s, multiplier 2..255.

Must not: know about sockets or sessions (`announcer.bfd`), or read files.
"""

from __future__ import annotations

from typing import Final

from announcer.config import fields
from announcer.config.errors import ConfigError
from announcer.config.fields import Section
from announcer.config.model import BfdConfig

MIN_INTERVAL: Final = 0.01
MAX_INTERVAL: Final = 60.0
MIN_MULTIPLIER: Final = 2
MAX_MULTIPLIER: Final = 255

_INTERVAL: Final = fields.seconds_in(MIN_INTERVAL, MAX_INTERVAL)
_MULTIPLIER: Final = fields.integer_in(MIN_MULTIPLIER, MAX_MULTIPLIER)


def parse_bfd(data: object, errors: list[ConfigError]) -> BfdConfig:
    """The top-level `bfd` section (the defaults of every neighbor)."""
    return _profile(data, "bfd", BfdConfig(), errors, nullable=False)


def parse_neighbor_bfd(
    data: object, path: str, default: BfdConfig, errors: list[ConfigError]
) -> BfdConfig:
    """A neighbor's `bfd` mapping over the top-level profile `default`."""
    return _profile(data, path, default, errors, nullable=True)


def _profile(
    data: object, path: str, default: BfdConfig, errors: list[ConfigError], *, nullable: bool
) -> BfdConfig:
    section = Section(data, path, errors)

    def take(key: str, convert: fields.Convert[fields.T], fallback: fields.T) -> fields.T:
        if nullable:
            value = section.take(key, fields.optional(convert), None)
            return fallback if value is None else value
        return section.take(key, convert, fallback)

    profile = BfdConfig(
        enabled=take("enabled", fields.boolean, default.enabled),
        transmit_interval=take("transmit_interval", _INTERVAL, default.transmit_interval),
        receive_interval=take("receive_interval", _INTERVAL, default.receive_interval),
        detect_multiplier=take("detect_multiplier", _MULTIPLIER, default.detect_multiplier),
    )
    section.finish()
    return profile

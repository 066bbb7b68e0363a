"""`render_effective`: the configuration as YAML with every default filled in, in the
example file's key order. Parsing the output gives back an equal `Config`.

Secrets never appear: the model only holds the paths of the files that contain them.

Must not: validate, read files or look at the host.
"""

from __future__ import annotations

import dataclasses
import enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import yaml

from announcer.config.model import (
    Community,
    Config,
    ExabgpConfig,
    LargeCommunity,
    ListenAddress,
    StatusConfig,
)

_HEADER = "# announcer: effective configuration (every default filled in)\n"
_AS_TEXT = (
    Community,
    LargeCommunity,
    ListenAddress,
    Path,
    IPv4Address,
    IPv6Address,
    IPv4Network,
    IPv6Network,
)


def _plain(value: object) -> object:
    """YAML-ready data for one model value."""
    if isinstance(value, _AS_TEXT):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, StatusConfig):
        return {**_fields(value), "mode": f"{value.mode:04o}"}
    if isinstance(value, ExabgpConfig):
        return {**_fields(value), "settings": dict(value.settings)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    return value


def _fields(value: object) -> dict[str, object]:
    assert dataclasses.is_dataclass(value) and not isinstance(value, type)
    return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}


def as_document(config: Config) -> dict[str, object]:
    """The configuration as plain YAML data (what `parse_config` accepts)."""
    return _fields(config)


def render_effective(config: Config) -> str:
    """YAML for the configuration with every default filled; never contains a secret."""
    body = yaml.safe_dump(
        as_document(config), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return _HEADER + body

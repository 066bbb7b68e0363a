"""The configuration's JSON Schema (draft 2020-12), generated from the model, for editors.

`config_schema()` walks the dataclasses of `model` (keys, types, defaults, which keys are
required) and adds, from the one table `_KEYS`, each key's description and the ranges and
patterns of the parser's rules that a schema can express. The repository ships the result as
`config/announcer.schema.json`; regenerate it with
`python -m announcer.config.schema > config/announcer.schema.json`.

The parser stays the authority: every document it accepts, the schema accepts, but the schema
is looser where a rule spans several keys (timeout below interval, no repeated neighbor) or
needs more than a pattern (unicast addresses, control characters, lengths in bytes).

Must not: validate documents, read files, or describe a key the model does not have.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import operator
import sys
import types
import typing
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Final

from announcer.config.exabgp_settings import KNOWN_SETTINGS
from announcer.config.model import (
    WELL_KNOWN_COMMUNITIES,
    Community,
    Config,
    IPAddress,
    LargeCommunity,
    ListenAddress,
    VipNetwork,
)
from announcer.config.parse import MAX_INTERVAL
from announcer.config.parse_bfd import MAX_INTERVAL as MAX_BFD_INTERVAL
from announcer.config.parse_bfd import MAX_MULTIPLIER, MIN_INTERVAL, MIN_MULTIPLIER
from announcer.config.parse_bgp import MAX_PREPEND

Schema = dict[str, object]
_U16: Final = 0xFFFF
_U32: Final = 0xFFFFFFFF


def _decimal_up_to(limit: int) -> str:
    """A regex for 0..limit written with at most as many digits as `limit` (leading zeros
    allowed), the way the parser reads the parts of communities and asdot numbers."""
    digits = str(limit)
    parts = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for index, digit in enumerate(digits):
        rest = len(digits) - index - 1
        if digit != "0":
            tail = f"[0-9]{{{rest}}}" if rest else ""
            parts.append(f"{digits[:index]}[0-{int(digit) - 1}]{tail}")
    return "(?:" + "|".join([*parts, digits]) + ")"


_U16_TEXT: Final = _decimal_up_to(_U16)
_U32_TEXT: Final = _decimal_up_to(_U32)
_LABEL: Final = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_IPV6_TEXT: Final = "[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
_ACCOUNT: Final = "^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"

# The YAML form of each model type (string keywords apply to strings only, numeric keywords to
# numbers only, so a nullable field just adds "null" to "type").
_SCALARS: Final[Mapping[object, Schema]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string", "minLength": 1, "maxLength": 4096},
    Path: {"type": "string", "pattern": "^/", "maxLength": 4096},
    IPv4Address: {"type": "string", "format": "ipv4"},
    IPv6Address: {"type": "string", "format": "ipv6"},
    IPAddress: {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    # A bare address or its host route; an IPv4 mask may also be spelt as a netmask.
    VipNetwork: {
        "type": "string",
        "pattern": f"^(?:[0-9.]+(?:/(?:0*32|255\\.255\\.255\\.255))?|{_IPV6_TEXT}(?:/0*128)?)$",
    },
    Community: {
        "type": "string",
        "pattern": f"^(?:{_U16_TEXT}:{_U16_TEXT}|{'|'.join(WELL_KNOWN_COMMUNITIES)})$",
        "not": {"pattern": "^(?:65535:(?:0{1,5}|0{0,2}666)|blackhole)$"},
    },
    LargeCommunity: {"type": "string", "pattern": f"^{_U32_TEXT}(?::{_U32_TEXT}){{2}}$"},
    ListenAddress: {
        "type": "string",
        "pattern": f"^(?:\\[[0-9A-Fa-f:.]+\\]|[0-9.]+):{_U16_TEXT}$",
    },
}
_AS_NUMBER: Final[Schema] = {
    "type": ["integer", "string"],
    "minimum": 1,
    "maximum": _U32,
    "pattern": f"^(?:{_U32_TEXT}|{_U16_TEXT}\\.{_U16_TEXT})$",
}
_HOLD_TIME: Final[Schema] = {
    "type": "integer",
    "minimum": 0,
    "maximum": _U16,
    "not": {"enum": [1, 2]},
}


def _seconds(low: float, high: float, *, above: bool = False) -> Schema:
    return {"exclusiveMinimum" if above else "minimum": low, "maximum": high}


def _range(low: int, high: int) -> Schema:
    return {"minimum": low, "maximum": high}


_FROM_MODEL: Final = object()


@dataclasses.dataclass(frozen=True)
class _Key:
    description: str
    # Merged over the schema derived from the model type; with `replace`, the whole schema
    # (the YAML form differs from the model's type).
    rules: Mapping[str, object] = dataclasses.field(default_factory=dict)
    _: dataclasses.KW_ONLY
    replace: bool = False
    # null is accepted although the model's type is not optional: the parser resolves it.
    nullable: bool = False
    default: object = _FROM_MODEL


_KEYS: Final[Mapping[str, _Key]] = {
    "apiserver": _Key("How the local apiserver is probed."),
    "apiserver.url": _Key(
        "The local apiserver (https, no credentials, query or fragment); the probe GETs "
        "<url>/readyz, and /livez when that fails.",
        {"pattern": "^[Hh][Tt][Tt][Pp][Ss]://[^/?#@\\s]+"},
    ),
    "apiserver.ca_file": _Key("CA that signed the serving certificate; may not exist yet."),
    "apiserver.server_name": _Key(
        "Name verified in the serving certificate (a DNS name or an IP address).",
        {"pattern": f"^(?:(?=.{{1,253}}$){_LABEL}(?:\\.{_LABEL})*|{_IPV6_TEXT}(?:%[^%]+)?)$"},
    ),
    "apiserver.client_cert_file": _Key("Client certificate (with client_key_file); null: none."),
    "apiserver.client_key_file": _Key("Its private key (with client_cert_file); null: none."),
    "apiserver.token_file": _Key("File holding a bearer token; null: no token."),
    "apiserver.interval": _Key(
        "Seconds between probe starts.", _seconds(0, MAX_INTERVAL, above=True)
    ),
    "apiserver.timeout": _Key(
        "Per-probe deadline in seconds, below interval.", _seconds(0, MAX_INTERVAL, above=True)
    ),
    "apiserver.fast_interval": _Key(
        "Seconds between probe starts after a failure while announcing, below interval "
        "(unset: 0.1, or half a shorter interval).",
        _seconds(0, MAX_INTERVAL, above=True),
    ),
    "apiserver.rise": _Key("Consecutive successful probes before announcing.", _range(1, 100)),
    "apiserver.fall": _Key("Consecutive failed probes before withdrawing.", _range(1, 100)),
    "apiserver.min_healthy": _Key(
        "Seconds the apiserver must stay healthy before (re)announcing.", _seconds(0, 3600)
    ),
    "vips": _Key(
        "Host routes (/32, /128 or a bare address) announced while the apiserver is ready.",
        {"minItems": 1, "uniqueItems": True},
    ),
    "bgp": _Key("The BGP sessions to the upstream routers (run by ExaBGP)."),
    "bgp.router_id": _Key("BGP router id: an IPv4 address, usually the node's own."),
    "bgp.local_as": _Key(
        'This node\'s AS: 1..4294967295, or asdot as a string ("1.10").',
        _AS_NUMBER,
        replace=True,
    ),
    "bgp.hold_time": _Key("Default hold time in seconds: 0 or 3..65535.", _HOLD_TIME, replace=True),
    "bgp.neighbors": _Key("The routers, each address once.", {"minItems": 1}),
    "bgp.neighbors[].address": _Key("The router's address (no zone index)."),
    "bgp.neighbors[].peer_as": _Key(
        "The router's AS, same forms as local_as.", _AS_NUMBER, replace=True
    ),
    "bgp.neighbors[].local_address": _Key(
        "Source address, same family as address; null: chosen by the kernel (not with BFD)."
    ),
    "bgp.neighbors[].hold_time": _Key(
        "Hold time for this session; null: bgp.hold_time.",
        _HOLD_TIME,
        replace=True,
        nullable=True,
        default=None,
    ),
    "bgp.neighbors[].password_file": _Key("TCP MD5 password file; null: no password."),
    "bgp.neighbors[].ttl_security": _Key("GTSM: send with TTL 255; not with multihop."),
    "bgp.neighbors[].multihop": _Key("eBGP multihop TTL; null: kernel default.", _range(1, 255)),
    "bgp.neighbors[].families": _Key(
        "Families carried; null: the family of address. No ipv4 over an IPv6 session.",
        {"minItems": 1, "uniqueItems": True},
        nullable=True,
        default=None,
    ),
    "bgp.neighbors[].next_hop_ipv6": _Key(
        "IPv6 next hop: required exactly when ipv6 is carried over an IPv4 session."
    ),
    "bgp.neighbors[].port": _Key("The router's BGP port.", _range(1, _U16)),
    "bgp.neighbors[].bfd": _Key("This session's BFD profile over the top-level bfd section."),
    "bgp.neighbors[].bfd.enabled": _Key(
        "Run BFD with this router; null: bfd.enabled.", nullable=True, default=None
    ),
    "bgp.neighbors[].bfd.transmit_interval": _Key(
        "Seconds; null: bfd.transmit_interval.",
        _seconds(MIN_INTERVAL, MAX_BFD_INTERVAL),
        nullable=True,
        default=None,
    ),
    "bgp.neighbors[].bfd.receive_interval": _Key(
        "Seconds; null: bfd.receive_interval.",
        _seconds(MIN_INTERVAL, MAX_BFD_INTERVAL),
        nullable=True,
        default=None,
    ),
    "bgp.neighbors[].bfd.detect_multiplier": _Key(
        "Null: bfd.detect_multiplier.",
        _range(MIN_MULTIPLIER, MAX_MULTIPLIER),
        nullable=True,
        default=None,
    ),
    "bfd": _Key("BFD (RFC 5880) with every neighbor; each may override these keys."),
    "bfd.enabled": _Key("Run a BFD session with every neighbor (each needs its local_address)."),
    "bfd.transmit_interval": _Key(
        "Desired seconds between BFD packets sent.", _seconds(MIN_INTERVAL, MAX_BFD_INTERVAL)
    ),
    "bfd.receive_interval": _Key(
        "Required seconds between BFD packets received.", _seconds(MIN_INTERVAL, MAX_BFD_INTERVAL)
    ),
    "bfd.detect_multiplier": _Key(
        "Packets missed before the session is down.", _range(MIN_MULTIPLIER, MAX_MULTIPLIER)
    ),
    "announce": _Key("Attributes sent with every VIP route."),
    "announce.communities": _Key(
        'Standard communities, "a:b" or a well-known name; not blackhole or 65535:0.',
        {"uniqueItems": True},
    ),
    "announce.large_communities": _Key('Large communities, "a:b:c".', {"uniqueItems": True}),
    "announce.med": _Key("MED; null: not sent.", _range(0, _U32)),
    "announce.as_path_prepend": _Key(
        "Extra copies of local_as in the AS path.", _range(0, MAX_PREPEND)
    ),
    "drain": _Key("Draining: make the route unattractive, wait, then withdraw."),
    "drain.graceful_shutdown": _Key("Re-announce with the GRACEFUL_SHUTDOWN community first."),
    "drain.as_path_prepend": _Key(
        "Extra copies of local_as while draining.", _range(0, MAX_PREPEND)
    ),
    "drain.delay": _Key("Seconds to hold the drained route before withdrawing.", _seconds(0, 300)),
    "drain.withdraw_wait": _Key(
        "Seconds after withdrawing before the VIP leaves the interface.", _seconds(0, 60)
    ),
    "loopback": _Key("The VIP addresses on this node."),
    "loopback.manage": _Key("Put the VIPs on the interface exactly while they are announced."),
    "loopback.interface": _Key(
        "The interface for the VIPs.",
        {"pattern": "^[A-Za-z0-9_.@-]{1,15}$", "not": {"enum": [".", ".."]}},
    ),
    "status": _Key("The local control socket (status, drain, undrain)."),
    "status.socket": _Key("Absolute path, at most 107 bytes.", {"maxLength": 107}),
    "status.mode": _Key(
        "Permissions as a quoted octal string; not world-writable.",
        {"type": "string", "pattern": "^0?[0-7]{2}[0145]$"},
        replace=True,
        default="0600",
    ),
    "status.group": _Key("Group owning the socket; null: root's.", {"pattern": _ACCOUNT}),
    "state_dir": _Key("Where the drain state is kept across reboots."),
    "exabgp": _Key("The ExaBGP process the daemon supervises."),
    "exabgp.binary": _Key(
        "The exabgp program; null: the one installed with the announcer.",
        nullable=True,
        default=None,
    ),
    "exabgp.user": _Key(
        "Unprivileged user ExaBGP runs as.", {"pattern": _ACCOUNT, "not": {"const": "root"}}
    ),
    "exabgp.heartbeat_timeout": _Key(
        "Seconds without a heartbeat before the relay stops ExaBGP.", _seconds(0.5, 30)
    ),
    "exabgp.settings": _Key(
        'ExaBGP environment settings, "section.option" without "exabgp."; reserved ones refused.',
        {
            "type": "object",
            "propertyNames": {"enum": sorted(KNOWN_SETTINGS)},
            "additionalProperties": {
                "type": ["string", "number", "boolean"],
                "minLength": 1,
                "maxLength": 4096,
            },
        },
        replace=True,
        default={},
    ),
    "metrics": _Key("Prometheus metrics (optional)."),
    "metrics.listen": _Key('Listener, "127.0.0.1:9470" or "[::1]:9470"; null: none.'),
    "log": _Key("The daemon's log (read at start; a reload keeps the old value)."),
    "log.format": _Key(
        "text: one line per event (no timestamp under journald); json: one object a line. "
        "run --log-format overrides it."
    ),
}


def _plain(value: object) -> object:
    """A model default as JSON data."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return str(value)


def _derived(hint: object, path: str, seen: set[str]) -> Schema:
    """The schema of a model type; `path` names the key it belongs to."""
    members = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in members:
        inner = functools.reduce(operator.or_, [m for m in members if m is not type(None)])
        return _nullable(_derived(inner, path, seen))
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if typing.get_origin(hint) is tuple and members[1:] == (Ellipsis,):
        return {"type": "array", "items": _derived(members[0], f"{path}[]", seen)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [member.value for member in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _object(hint, path, seen)
    raise TypeError(f"{path}: no schema for the model type {hint!r}")


def _nullable(schema: Schema) -> Schema:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _object(cls: type, path: str, seen: set[str]) -> Schema:
    hints = typing.get_type_hints(cls)
    properties: Schema = {}
    required = []
    for field in dataclasses.fields(cls):
        key = f"{path}.{field.name}" if path else field.name
        properties[field.name] = _property(field, hints[field.name], key, seen)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            required.append(field.name)
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _property(field: dataclasses.Field[object], hint: object, key: str, seen: set[str]) -> Schema:
    seen.add(key)
    entry = _KEYS[key]
    schema = dict(entry.rules) if entry.replace else {**_derived(hint, key, seen), **entry.rules}
    if entry.nullable or (
        schema["type"] == "object" and field.default_factory is not dataclasses.MISSING
    ):
        # A section with every key commented out is null: all defaults.
        schema = _nullable(schema)
    default = entry.default
    if default is _FROM_MODEL and field.default is not dataclasses.MISSING:
        default = _plain(field.default)
    if default is _FROM_MODEL:
        return {"description": entry.description, **schema}
    return {"description": entry.description, **schema, "default": default}


def config_schema() -> Schema:
    """The JSON Schema (draft 2020-12) of the configuration file."""
    seen: set[str] = set()
    body = _object(Config, "", seen)
    if stale := sorted(_KEYS.keys() - seen):
        raise LookupError(f"descriptions of keys the model does not have: {', '.join(stale)}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "announcer configuration",
        "description": (
            "/etc/announcer/config.yaml. Generated from the configuration model; "
            "`announcer check-config` is the authority and also checks rules across keys."
        ),
        **body,
    }


def schema_json() -> str:
    """`config_schema()` as the text of `config/announcer.schema.json`."""
    return json.dumps(config_schema(), indent=2) + "\n"


def main() -> None:
    sys.stdout.write(schema_json())


if __name__ == "__main__":
    main()

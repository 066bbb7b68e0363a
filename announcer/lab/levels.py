"""One level of node settings, as written: `topology.defaults`, one kind, one group or one
node, before `announcer.lab.topology` lets the levels inherit from each other.

Owns: which node keys are supported, ignored or refused; the shapes of their values; the lab's
`announcer.lab/role` and `announcer.lab/vips` labels (checked here, stricter than containerlab);
bind specs (`source:destination[:options]`, the source not yet expanded); valid node and lab
names. Every error is a TopologyError naming the key path and the bad value.

Must not: combine levels, expand magic variables or `~`, or look at the file system.

Ignored, because without containers they cannot change what the lab does: the node keys in
`_IGNORED_NODE_KEYS` (the realised nodes run as root in the host's PID and cgroup namespaces,
and nothing is pulled: host tools stand in for `image`, which is only recorded) and the bind
options z, Z and mount propagation. Rejected as not supported by the lab realiser: the node keys
in `_UNSUPPORTED_NODE_KEYS`, `env.__IMPORT_ENVS` and anonymous volumes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from announcer.lab.clabfile import (
    TopologyError,
    at,
    check_keys,
    expect_mapping,
    expect_text,
    expect_text_map,
    expect_texts,
)

ROLE_LABEL = "announcer.lab/role"
VIPS_LABEL = "announcer.lab/vips"
ROLES = ("router", "control-plane", "client")

Vip = ipaddress.IPv4Network | ipaddress.IPv6Network

VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a node or lab name


def parse_vips(text: str) -> tuple[Vip, ...]:
    """Comma-separated prefixes; ValueError names the item that is not one."""
    vips: list[Vip] = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                vips.append(ipaddress.ip_network(item))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP prefix") from None
    return tuple(vips)


_SUPPORTED_NODE_KEYS = frozenset(
    {"kind", "group", "image", "cmd", "exec", "binds", "env", "labels"}
)
_IGNORED_NODE_KEYS = frozenset(
    {"type", "position", "image-pull-policy", "restart-policy", "auto-remove", "license"}
    | {"runtime", "cpu", "cpu-set", "memory", "shm-size", "aliases", "certificate"}
    | {"credentials", "username", "password", "healthcheck", "link-apply-mode", "cap-add"}
    | {"privileged", "security-opts", "cgroupns-mode", "pid-mode"}
)
_UNSUPPORTED_NODE_KEYS = frozenset(
    {"startup-config", "startup-delay", "enforce-startup-config", "suppress-startup-config"}
    | {"config", "hostname", "entrypoint", "devices", "tmpfs", "ports", "mgmt-ipv4"}
    | {"mgmt-ipv6", "env-files", "user", "network-mode", "sysctls", "extras", "stages", "dns"}
    | {"components", "volumes"}
)
_BIND_OPTIONS = frozenset({"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave"})
_BIND_OPTIONS |= {"private", "rprivate"}


@dataclass(frozen=True, slots=True)
class BindSpec:
    path: str
    source: str
    destination: PurePosixPath
    read_only: bool


@dataclass(frozen=True, slots=True)
class Level:
    """The defaults, one kind, one group or one node, as written."""

    path: str
    kind: str = ""
    group: str = ""
    image: str = ""
    cmd: str = ""
    exec: tuple[tuple[str, str], ...] = ()  # (key path, command)
    binds: tuple[BindSpec, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


def parse_level(value: object, path: str) -> Level:
    """The level at `path` (`topology.defaults`, `topology.kinds.linux`, ...)."""
    raw = expect_mapping(value, path)
    check_keys(raw, path, _SUPPORTED_NODE_KEYS, _IGNORED_NODE_KEYS, _UNSUPPORTED_NODE_KEYS)
    env = expect_text_map(raw.get("env"), at(path, "env"))
    if "__IMPORT_ENVS" in env:
        raise TopologyError(
            f"{at(at(path, 'env'), '__IMPORT_ENVS')}: importing the host environment is not"
            " supported by the lab realiser"
        )
    labels = expect_text_map(raw.get("labels"), at(path, "labels"))
    _check_labels(labels, at(path, "labels"))
    binds = expect_texts(raw.get("binds"), at(path, "binds"))
    return Level(
        path=path,
        kind=expect_text(raw.get("kind"), at(path, "kind")),
        group=expect_text(raw.get("group"), at(path, "group")),
        image=expect_text(raw.get("image"), at(path, "image")),
        cmd=expect_text(raw.get("cmd"), at(path, "cmd")),
        exec=tuple(expect_texts(raw.get("exec"), at(path, "exec"))),
        binds=tuple(_bind_spec(text, bind_path) for bind_path, text in binds),
        env=env,
        labels=labels,
    )


def parse_levels(value: object, path: str, *, names: bool = False) -> dict[str, Level]:
    """The levels of a mapping (kinds, groups or nodes); `names` checks each key is a valid
    node name."""
    levels = {}
    for name, raw in expect_mapping(value, path).items():
        if names and not VALID_NAME.fullmatch(name):
            raise TopologyError(
                f"{at(path, name)}: {name!r} is not a valid node name (letters, digits, '.',"
                " '_' and '-', starting with a letter or digit)"
            )
        levels[name] = parse_level(raw, at(path, name))
    return levels


def _check_labels(labels: Mapping[str, str], path: str) -> None:
    role = labels.get(ROLE_LABEL)
    if role is not None and role not in ROLES:
        raise TopologyError(f"{at(path, ROLE_LABEL)}: {role!r} is not one of {', '.join(ROLES)}")
    try:
        parse_vips(labels.get(VIPS_LABEL, ""))
    except ValueError as exc:
        raise TopologyError(f"{at(path, VIPS_LABEL)}: {exc}") from None


def _bind_spec(text: str, path: str) -> BindSpec:
    parts = text.split(":")
    if len(parts) == 1:
        raise TopologyError(
            f"{path}: {text!r} is an anonymous volume, not supported by the lab realiser"
        )
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise TopologyError(f"{path}: {text!r} is not of the form source:destination[:options]")
    options = parts[2].split(",") if len(parts) == 3 else []
    for option in options:
        if option not in _BIND_OPTIONS:
            raise TopologyError(f"{path}: {text!r} has the unknown option {option!r}")
    if {"ro", "rw"} <= set(options):
        raise TopologyError(f"{path}: {text!r} is both read-only and read-write")
    if not parts[1].startswith("/"):
        raise TopologyError(f"{path}: {text!r}: the destination must be an absolute path")
    return BindSpec(path, parts[0], PurePosixPath(parts[1]), "ro" in options)

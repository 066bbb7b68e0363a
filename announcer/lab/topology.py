"""The containerlab topology, as the lab realiser sees it: the `kind: linux` subset, with the
meaning containerlab gives each key.

Owns: inheritance defaults -> kinds -> groups -> node, lab naming (prefix, namespace names,
lab dir, magic variables), binds, command splitting and brief-link checks, on top of the
document that `announcer.lab.clabschema` reads (template check, `${VAR}`, strict YAML). Every
error is a TopologyError naming the key path and the bad value.

Must not: create anything, touch the network or check that bind sources exist (containerlab
stats them; the realiser does when it builds the lab). The only I/O is reading the file.

Inheritance, as containerlab's `types/topology.go`: `kind`, `group`, `image` and `cmd` come from
the most specific level that sets them; `labels` and `env` are merged, the more specific level
winning per key; `binds` are merged by destination, the more specific level winning; `exec`
lists are concatenated, defaults first. The kind comes from the node, else its group, else the
defaults' group, else the defaults; the group from the node, else its kind, else the defaults.
A group that `topology.groups` does not define contributes nothing (containerlab uses `group`
for graph layout too). Magic variables are replaced in bind sources and exec commands only.

Ignored, because without containers they cannot change what the lab does: top-level `debug`;
node keys in `_IGNORED_NODE_KEYS` (the realised nodes run as root in the host's PID and cgroup
namespaces, and nothing is pulled: host tools stand in for `image`, which is only recorded);
link `labels` and `vars`; the bind options z, Z and mount propagation.

Rejected as not supported by the lab realiser: `mgmt`, `settings`, the node keys in
`_UNSUPPORTED_NODE_KEYS`, `env.__IMPORT_ENVS`, typed (extended) links, link `mtu`/`ipv4`/`ipv6`,
the special link nodes host/mgmt-net/macvlan, anonymous volumes and kinds other than linux.
Stricter than containerlab: `eth0` (its management interface) cannot be a link endpoint,
interface names must be real Linux names (containerlab would fall back to an altname), and the
`announcer.lab/role` and `announcer.lab/vips` labels are checked.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from announcer.lab.clabschema import TopologyError as TopologyError  # re-exported
from announcer.lab.clabschema import (
    at,
    check_keys,
    describe,
    endpoint_count_message,
    expect_mapping,
    expect_text,
    expect_text_map,
    expect_texts,
    parse_strict,
    read_text,
)

ROLE_LABEL = "announcer.lab/role"
VIPS_LABEL = "announcer.lab/vips"
ROLES = ("router", "control-plane", "client")

Vip = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Bind:
    source: Path
    destination: PurePosixPath
    read_only: bool


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str
    image: str
    group: str | None
    labels: Mapping[str, str]
    env: Mapping[str, str]
    binds: tuple[Bind, ...]
    cmd: tuple[str, ...] | None
    exec: tuple[tuple[str, ...], ...]
    netns: str  # Topology.netns(name): containerlab's container name


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


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    prefix: str
    path: Path
    lab_dir: Path
    nodes: Mapping[str, Node]
    links: tuple[Link, ...]

    def netns(self, node_name: str) -> str:
        """The node's network namespace, named like containerlab's container."""
        return self.nodes[node_name].netns

    def node_dir(self, node_name: str) -> Path:
        return self.lab_dir / self.nodes[node_name].name

    def role(self, node_name: str) -> str | None:
        return self.nodes[node_name].labels.get(ROLE_LABEL)

    def vips(self) -> tuple[Vip, ...]:
        """The VIPs from every node's `announcer.lab/vips` label, in order of first mention."""
        found: dict[Vip, None] = {}
        for node in self.nodes.values():
            found.update(dict.fromkeys(parse_vips(node.labels.get(VIPS_LABEL, ""))))
        return tuple(found)

    def bind_source(self, node_name: str, destination: str | PurePosixPath) -> Path | None:
        """The host path behind a path inside the node (through the innermost bind holding
        it), or None when no bind holds it."""
        target = PurePosixPath(destination)
        holders = [
            bind
            for bind in self.nodes[node_name].binds
            if bind.destination == target or bind.destination in target.parents
        ]
        if not holders:
            return None
        bind = max(holders, key=lambda b: len(b.destination.parts))
        return bind.source.joinpath(*target.relative_to(bind.destination).parts)


def long_name(prefix: str, lab: str, node: str) -> str:
    """containerlab's container name: `<prefix>-<lab>-<node>`; `<lab>-<node>` for the prefix
    `__lab-name`; the bare node name for an empty prefix."""
    if prefix == "":
        return node
    if prefix == "__lab-name":
        return f"{lab}-{node}"
    return f"{prefix}-{lab}-{node}"


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


def split_command(text: str) -> tuple[str, ...]:
    """Split like containerlab (github.com/google/shlex), which runs the words without a
    shell: quotes and backslashes as in a shell, a word starting with '#' comments out the rest
    of the line, nothing is expanded. ValueError on an open quote or a trailing backslash."""
    words: list[str] = []
    word: list[str] = []
    state = "start"
    for char in text:
        if state == "comment":
            state = "start" if char == "\n" else state
        elif state in ("escape", "dquote-escape"):
            word.append(char)
            state = "word" if state == "escape" else "dquote"
        elif state == "squote":
            state = "word" if char == "'" else state
            word.extend(() if char == "'" else char)
        elif state == "dquote":
            state = {'"': "word", "\\": "dquote-escape"}.get(char, state)
            word.extend(() if char in '"\\' else char)
        elif char in " \t\r\n":
            if state == "word":
                words.append("".join(word))
                word, state = [], "start"
        elif char == "#" and state == "start":
            state = "comment"
        else:
            state = {"\\": "escape", '"': "dquote", "'": "squote"}.get(char, "word")
            word.extend(char if state == "word" else ())
    if state in ("escape", "dquote-escape"):
        raise ValueError("nothing after the final backslash")
    if state in ("squote", "dquote"):
        raise ValueError("no closing quote")
    return (*words, "".join(word)) if state == "word" else tuple(words)


def load_topology(path: Path, *, environ: Mapping[str, str] | None = None) -> Topology:
    """Load a topology file. `environ` (default: the process environment) supplies `${VAR}`,
    `CLAB_LABDIR_BASE` and HOME for `~` in bind sources."""
    env = os.environ if environ is None else environ
    file = _absolute(path)
    document = expect_mapping(parse_strict(read_text(file, env), source=file), "")
    check_keys(document, "", {"name", "prefix", "topology"}, {"debug"}, {"mgmt", "settings"})
    name = _lab_name(document.get("name"))
    prefix = _prefix(document.get("prefix"))
    base = _absolute(env.get("CLAB_LABDIR_BASE") or file.parent)
    lab = _Lab(name, prefix, file.parent, base / f"clab-{name}", env.get("HOME"))
    if document.get("topology") is None:
        raise TopologyError("topology: required")
    topo = expect_mapping(document["topology"], "topology")
    check_keys(topo, "topology", {"defaults", "kinds", "groups", "nodes", "links"})
    defaults = _level(topo.get("defaults"), "topology.defaults")
    kinds = _levels(topo.get("kinds"), "topology.kinds")
    groups = _levels(topo.get("groups"), "topology.groups")
    nodes = {
        node_name: _node(node_name, own, defaults=defaults, kinds=kinds, groups=groups, lab=lab)
        for node_name, own in _levels(topo.get("nodes"), "topology.nodes", names=True).items()
    }
    links = _links(topo.get("links"), nodes)
    return Topology(name, prefix, file, lab.lab_dir, MappingProxyType(nodes), links)


# ---- one level of node settings, as written -------------------------------------------------

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
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BIND_OPTIONS = frozenset({"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave"})
_BIND_OPTIONS |= {"private", "rprivate"}


@dataclass(frozen=True, slots=True)
class _BindSpec:
    path: str
    source: str
    destination: PurePosixPath
    read_only: bool


@dataclass(frozen=True, slots=True)
class _Level:
    """The defaults, one kind, one group or one node, as written."""

    path: str
    kind: str = ""
    group: str = ""
    image: str = ""
    cmd: str = ""
    exec: tuple[tuple[str, str], ...] = ()  # (key path, command)
    binds: tuple[_BindSpec, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Lab:
    name: str
    prefix: str
    topo_dir: Path
    lab_dir: Path
    home: str | None


def _level(value: object, path: str) -> _Level:
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
    return _Level(
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


def _levels(value: object, path: str, *, names: bool = False) -> dict[str, _Level]:
    levels = {}
    for name, raw in expect_mapping(value, path).items():
        if names and not _NAME.fullmatch(name):
            raise TopologyError(
                f"{at(path, name)}: {name!r} is not a valid node name (letters, digits, '.',"
                " '_' and '-', starting with a letter or digit)"
            )
        levels[name] = _level(raw, at(path, name))
    return levels


def _check_labels(labels: Mapping[str, str], path: str) -> None:
    role = labels.get(ROLE_LABEL)
    if role is not None and role not in ROLES:
        raise TopologyError(f"{at(path, ROLE_LABEL)}: {role!r} is not one of {', '.join(ROLES)}")
    try:
        parse_vips(labels.get(VIPS_LABEL, ""))
    except ValueError as exc:
        raise TopologyError(f"{at(path, VIPS_LABEL)}: {exc}") from None


def _bind_spec(text: str, path: str) -> _BindSpec:
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
    return _BindSpec(path, parts[0], PurePosixPath(parts[1]), "ro" in options)


# ---- a node, with everything it inherits ----------------------------------------------------

_MAGIC = re.compile(r"__clab(?:Dir|NodeDir|NodeName)__")


def _node(
    name: str,
    own: _Level,
    *,
    defaults: _Level,
    kinds: Mapping[str, _Level],
    groups: Mapping[str, _Level],
    lab: _Lab,
) -> Node:
    nothing = _Level(path="")
    kind = (
        own.kind
        or groups.get(own.group, nothing).kind
        or groups.get(defaults.group, nothing).kind
        or defaults.kind
    )
    if not kind:
        raise TopologyError(f"{own.path}: no kind set on the node, its group or the defaults")
    if kind.lower() != "linux":
        raise TopologyError(
            f"{own.path}: kind {kind!r} is not supported by the lab realiser (only 'linux')"
        )
    group = own.group or kinds.get(kind, nothing).group or defaults.group
    chain = (defaults, kinds.get(kind, nothing), groups.get(group, nothing), own)
    magic = {
        "__clabDir__": str(lab.lab_dir),
        "__clabNodeDir__": str(lab.lab_dir / name),
        "__clabNodeName__": name,
    }

    def expand(text: str) -> str:
        return _MAGIC.sub(lambda match: magic[match.group()], text)

    binds = {spec.destination: spec for level in chain for spec in level.binds}
    cmd_level = next((level for level in reversed(chain) if level.cmd), nothing)
    return Node(
        name=name,
        kind=kind.lower(),
        image=next((level.image for level in reversed(chain) if level.image), ""),
        group=group or None,
        labels=MappingProxyType({k: v for level in chain for k, v in level.labels.items()}),
        env=MappingProxyType({k: v for level in chain for k, v in level.env.items()}),
        binds=tuple(_bind(spec, expand(spec.source), lab) for spec in binds.values()),
        cmd=_split(cmd_level.cmd, at(cmd_level.path, "cmd")) or None,
        exec=tuple(_exec(expand(text), path) for level in chain for path, text in level.exec),
        netns=long_name(lab.prefix, lab.name, name),
    )


def _bind(spec: _BindSpec, source: str, lab: _Lab) -> Bind:
    if source == "~" or source.startswith("~/"):
        if not lab.home:
            raise TopologyError(f"{spec.path}: cannot expand '~' in {source!r} without HOME")
        source = lab.home + source[1:]
    elif source.startswith("~"):
        raise TopologyError(f"{spec.path}: {source!r}: only '~' and '~/' can be expanded")
    resolved = Path(os.path.normpath(lab.topo_dir / source))
    return Bind(resolved, spec.destination, spec.read_only)


def _split(text: str, path: str) -> tuple[str, ...]:
    try:
        return split_command(text)
    except ValueError as exc:
        raise TopologyError(f"{path}: cannot split {text!r}: {exc}") from None


def _exec(text: str, path: str) -> tuple[str, ...]:
    argv = _split(text, path)
    if not argv:
        raise TopologyError(f"{path}: {text!r} is an empty command")
    return argv


# ---- links ----------------------------------------------------------------------------------

_SPECIAL_NODES = ("host", "mgmt-net", "macvlan")


def _links(value: object, nodes: Mapping[str, Node]) -> tuple[Link, ...]:
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


def _endpoint(text: str, path: str, nodes: Mapping[str, Node]) -> Endpoint:
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


# ---- the lab ---------------------------------------------------------------------------------


def _absolute(path: str | Path) -> Path:
    # As Go's filepath.Abs, which containerlab uses: absolute and clean, symlinks kept.
    return Path(os.path.normpath(Path(path).absolute()))


def _lab_name(value: object) -> str:
    name = expect_text(value, "name")
    if not name:
        raise TopologyError("name: required")
    if not _NAME.fullmatch(name):
        raise TopologyError(
            f"name: {name!r} is not a valid lab name (letters, digits, '.', '_' and '-',"
            " starting with a letter or digit)"
        )
    return name


def _prefix(value: object) -> str:
    if value is None:
        return "clab"
    prefix = expect_text(value, "prefix")
    if prefix not in ("", "__lab-name") and not _NAME.fullmatch(prefix):
        raise TopologyError(f"prefix: {prefix!r} is not empty, '__lab-name' or a name")
    return prefix

"""The containerlab topology, as the lab realiser sees it: the `kind: linux` subset, with the
meaning containerlab gives each key.

Owns: the model (Topology, Node, Bind), lab naming (prefix, namespace names, lab dir, magic
variables), inheritance defaults -> kinds -> groups -> node and binds, on top of the document
that `announcer.lab.clabfile` reads (template check, `${VAR}`, strict YAML). The levels as
written are `announcer.lab.levels`, links `announcer.lab.links` and command splitting
`announcer.lab.cmdsplit`; TopologyError, Endpoint, Link and split_command are re-exported here.
Every error is a TopologyError naming the key path and the bad value.

Must not: create anything, touch the network or check that bind sources exist (containerlab
stats them; the realiser does when it builds the lab). The only I/O is reading the file.

Inheritance, as containerlab's `types/topology.go`: `kind`, `group`, `image` and `cmd` come from
the most specific level that sets them; `labels` and `env` are merged, the more specific level
winning per key; `binds` are merged by destination, the more specific level winning; `exec`
lists are concatenated, defaults first. The kind comes from the node, else its group, else the
defaults' group, else the defaults; the group from the node, else its kind, else the defaults.
A group that `topology.groups` does not define contributes nothing (containerlab uses `group`
for graph layout too). Magic variables are replaced in bind sources and exec commands only.

Ignored: top-level `debug` (without containers it cannot change what the lab does). Rejected as
not supported by the lab realiser: `mgmt`, `settings` and kinds other than linux.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from announcer.lab.clabfile import TopologyError as TopologyError  # re-exported
from announcer.lab.clabfile import (
    at,
    check_keys,
    expect_mapping,
    expect_text,
    parse_strict,
    read_text,
)
from announcer.lab.cmdsplit import split_command as split_command  # re-exported
from announcer.lab.levels import (
    ROLE_LABEL,
    VALID_NAME,
    VIPS_LABEL,
    BindSpec,
    Level,
    Vip,
    parse_level,
    parse_levels,
    parse_vips,
)
from announcer.lab.links import Endpoint as Endpoint  # re-exported
from announcer.lab.links import Link as Link  # re-exported
from announcer.lab.links import parse_links


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
    defaults = parse_level(topo.get("defaults"), "topology.defaults")
    kinds = parse_levels(topo.get("kinds"), "topology.kinds")
    groups = parse_levels(topo.get("groups"), "topology.groups")
    nodes = {
        node_name: _node(node_name, own, defaults=defaults, kinds=kinds, groups=groups, lab=lab)
        for node_name, own in parse_levels(topo.get("nodes"), "topology.nodes", names=True).items()
    }
    links = parse_links(topo.get("links"), nodes)
    return Topology(name, prefix, file, lab.lab_dir, MappingProxyType(nodes), links)


# ---- a node, with everything it inherits ----------------------------------------------------

_MAGIC = re.compile(r"__clab(?:Dir|NodeDir|NodeName)__")


def _node(
    name: str,
    own: Level,
    *,
    defaults: Level,
    kinds: Mapping[str, Level],
    groups: Mapping[str, Level],
    lab: _Lab,
) -> Node:
    nothing = Level(path="")
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


def _bind(spec: BindSpec, source: str, lab: _Lab) -> Bind:
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


# ---- the lab ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lab:
    name: str
    prefix: str
    topo_dir: Path
    lab_dir: Path
    home: str | None


def _absolute(path: str | Path) -> Path:
    # As Go's filepath.Abs, which containerlab uses: absolute and clean, symlinks kept.
    return Path(os.path.normpath(Path(path).absolute()))


def _lab_name(value: object) -> str:
    name = expect_text(value, "name")
    if not name:
        raise TopologyError("name: required")
    if not VALID_NAME.fullmatch(name):
        raise TopologyError(
            f"name: {name!r} is not a valid lab name (letters, digits, '.', '_' and '-',"
            " starting with a letter or digit)"
        )
    return name


def _prefix(value: object) -> str:
    if value is None:
        return "clab"
    prefix = expect_text(value, "prefix")
    if prefix not in ("", "__lab-name") and not VALID_NAME.fullmatch(prefix):
        raise TopologyError(f"prefix: {prefix!r} is not empty, '__lab-name' or a name")
    return prefix

"""The containerlab topology file as a document, before any meaning is given to it.

Owns: reading the text the way containerlab does (Go template actions refused, `${VAR}`
expansion, then strict YAML where a repeated key is an error and every scalar stays text, as
yaml.v2 decodes it into containerlab's string fields); TopologyError and the key paths its
messages name; shape checks of document values (`expect_*`, `check_keys`).

Must not: interpret the document (that is `announcer.lab.topology`) or check it against
containerlab's editor schema (that is `announcer.lab.clabschema`). The only I/O is reading the
file.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path

import yaml


class TopologyError(ValueError):
    """The topology file cannot be realised; the message names the key path and value."""


def key_path(parts: Iterable[str | int]) -> str:
    """`topology.nodes.r1.binds[0]`; keys that are not plain words are quoted."""
    path = ""
    for part in parts:
        path = at(path, part)
    return path or "(top level)"


def at(path: str, part: str | int) -> str:
    """`path` extended by one key or index."""
    if isinstance(part, int):
        return f"{path}[{part}]"
    if re.fullmatch(r"[A-Za-z0-9_-]+", part):
        return f"{path}.{part}" if path else part
    return f"{path}[{part!r}]"


# ---- shapes, with errors that name the key path -------------------------------------------


def check_keys(
    raw: Mapping[str, object],
    path: str,
    supported: set[str] | frozenset[str],
    ignored: set[str] | frozenset[str] = frozenset(),
    unsupported: set[str] | frozenset[str] = frozenset(),
) -> None:
    for key in raw:
        if key in unsupported:
            raise TopologyError(f"{at(path, key)}: not supported by the lab realiser")
        if key not in supported and key not in ignored:
            raise TopologyError(f"{at(path, key)}: unknown key")


def expect_mapping(value: object, path: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TopologyError(f"{path or '(top level)'}: expected a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise TopologyError(f"{path or '(top level)'}: the key {key!r} is not a string")
    return value


def expect_text(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TopologyError(f"{path}: expected a string, got {describe(value)}")
    return value


def expect_texts(value: object, path: str) -> list[tuple[str, str]]:
    """A list of strings, each with its key path."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TopologyError(f"{path}: expected a list of strings, got {describe(value)}")
    return [
        (at(path, index), expect_text(item, at(path, index))) for index, item in enumerate(value)
    ]


def expect_text_map(value: object, path: str) -> dict[str, str]:
    return {
        key: expect_text(item, at(path, key)) for key, item in expect_mapping(value, path).items()
    }


def describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# ---- reading --------------------------------------------------------------------------------

_VAR_NAME = r"(?:[A-Za-z][A-Za-z0-9_]*|_[A-Za-z0-9_]+)"
_ENV_REF = re.compile(
    r"\$(?:(?P<escape>\$)"
    rf"|\{{(?P<braced>{_VAR_NAME})(?:(?P<op>:?[-=+])(?P<word>[^}}]*))?\}}"
    rf"|(?P<bare>{_VAR_NAME})"
    r"|(?P<open>\{)(?![^}]*\}))"
)


def expand_env(text: str, environ: Mapping[str, str]) -> str:
    """containerlab's envsubst: `$VAR`, `${VAR}`, `${VAR:=default}` (also `:-`, `=`, `-`, `+`,
    `:+`) and `$$` for a literal `$`. Unset variables without a default are left as written."""

    def substitute(match: re.Match[str]) -> str:
        if match["escape"]:
            return "$"
        if match["open"]:
            line = text.count("\n", 0, match.start()) + 1
            raise TopologyError(f"line {line}: '${{' has no closing '}}'")
        value = environ.get(match["braced"] or match["bare"])
        op, word = match["op"], match["word"]
        if op is None:
            return match.group() if value is None else value
        if op in (":-", ":="):
            return value if value else expand_env(word, environ)
        if op in ("-", "="):
            return value if value is not None else expand_env(word, environ)
        return expand_env(word, environ) if value is not None else ""

    return _ENV_REF.sub(substitute, text)


def read_text(path: Path, environ: Mapping[str, str]) -> str:
    """The file's text after containerlab's template and `${VAR}` stages."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path}: cannot read the topology file: {exc}") from exc
    if (start := text.find("{{")) >= 0:
        line = text.count("\n", 0, start) + 1
        raise TopologyError(
            f"line {line}: Go template actions ('{{{{') are not supported by the lab realiser"
        )
    return expand_env(text, environ)


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Hashable, object]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"key {key!r} appears twice", problem_mark=key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _scalar_text(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


for _tag in ("bool", "int", "float", "timestamp"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _scalar_text)


def parse_strict(text: str, *, source: object = "topology") -> object:
    """YAML with repeated keys refused and every non-null scalar kept as its text."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: invalid YAML: {exc}") from None

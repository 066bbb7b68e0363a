"""The containerlab topology file as a document, before any meaning is given to it.

Owns: reading the text the way containerlab does (Go template actions refused, `${VAR}`
expansion, then strict YAML where a repeated key is an error and every scalar stays text, as
yaml.v2 decodes it into containerlab's string fields); TopologyError and the key paths its
messages name; shape checks of document values (`expect_*`, `check_keys`); and validation
against containerlab's editor schema (clab.schema.json) with its two quirks handled: its
`\\p{N}\\p{L}` patterns need the `regex` module, and brief links' `prefixItems` is a 2020-12
keyword that a draft-07 validator ignores (emulated here, and the endpoint count checked).

Must not: interpret the document (that is `announcer.lab.topology`) or fetch the schema.
containerlab itself never applies the schema at deploy time; it is a second opinion for tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import regex
import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.validators import extend


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


def endpoint_count_message(count: int) -> str:
    """containerlab: "endpoint definition should consist of exactly 2 entries"."""
    return f"expected exactly 2 endpoints, got {count}"


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


# ---- the editor schema ----------------------------------------------------------------------


class _Descending(Protocol):
    def descend(
        self, instance: object, schema: object, path: int, schema_path: int
    ) -> Iterable[ValidationError]: ...


def _pattern(
    validator: _Descending, pattern: str, instance: object, schema: object
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _prefix_items(
    validator: _Descending, prefix: Sequence[object], instance: object, schema: object
) -> Iterator[ValidationError]:
    if isinstance(instance, list):
        for index, (item, subschema) in enumerate(zip(instance, prefix, strict=False)):
            yield from validator.descend(item, subschema, path=index, schema_path=index)


class _Checker(Protocol):
    def iter_errors(self, instance: object) -> Iterator[ValidationError]: ...


# extend() is untyped; what it returns is a validator class taking the schema.
_extend: Callable[..., Callable[[Mapping[str, object]], _Checker]] = extend
_ClabValidator = _extend(Draft7Validator, {"pattern": _pattern, "prefixItems": _prefix_items})


def schema_errors(document: object, schema: Mapping[str, object]) -> list[str]:
    """Every way `document` (typed YAML, as `yaml.safe_load` gives it) breaks the schema or
    containerlab's two-endpoint rule for brief links, as `path: message` lines."""
    validator = _ClabValidator(schema)
    # best_match descends into oneOf/anyOf to the branch that came closest, so that a bad key
    # in a node is reported as that key, not as "is not valid under any of the given schemas".
    leaves: Iterator[ValidationError] = (
        best_match([error]) or error for error in validator.iter_errors(document)
    )
    found = [(key_path(leaf.absolute_path), leaf.message) for leaf in leaves]
    found.extend(_endpoint_counts(document))
    return [f"{path}: {message}" for path, message in sorted(found)]


def _endpoint_counts(document: object) -> Iterator[tuple[str, str]]:
    topology = document.get("topology") if isinstance(document, dict) else None
    links = topology.get("links") if isinstance(topology, dict) else None
    for index, link in enumerate(links if isinstance(links, list) else ()):
        if not isinstance(link, dict) or link.get("type", "brief") != "brief":
            continue
        endpoints = link.get("endpoints")
        if isinstance(endpoints, list) and len(endpoints) != 2:
            path = key_path(("topology", "links", index, "endpoints"))
            yield path, endpoint_count_message(len(endpoints))

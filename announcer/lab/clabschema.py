"""Checking a containerlab topology document against containerlab's editor schema
(clab.schema.json), with its two quirks handled: its `\\p{N}\\p{L}` patterns need the `regex`
module, and brief links' `prefixItems` is a 2020-12 keyword that a draft-07 validator ignores
(emulated here, and the endpoint count checked).

Must not: read or interpret the document (that is `announcer.lab.clabfile` and
`announcer.lab.topology`) or fetch the schema. containerlab itself never applies the schema at
deploy time; it is a second opinion for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import regex
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.validators import extend

from announcer.lab.clabfile import key_path
from announcer.lab.links import endpoint_count_message


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

"""The configuration's JSON Schema: the shipped file is the generated one, the example and
every document the parser accepts validate, and mistakes the schema can express are caught by
both the schema and the parser.

Regenerate the shipped file with
`python -m announcer.config.schema > config/announcer.schema.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_config_fuzz import documents

from announcer.config import Config, ConfigError, parse_config, render_effective
from announcer.config.fields import as_number
from announcer.config.parse_bgp import community, large_community
from announcer.config.parse_host import mode
from announcer.config.schema import config_schema, schema_json

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "config" / "announcer.schema.json"
EXAMPLE = ROOT / "config" / "announcer.example.yaml"
SNIPPETS = Path(__file__).parent / "config_snippets"
# Every configuration in the repository: the example, test snippets, the lab nodes'.
VALID = [
    EXAMPLE,
    SNIPPETS / "minimal.yaml",
    SNIPPETS / "dual-stack.yaml",
    *sorted(ROOT.glob("containerlab/*/config.yaml")),
]
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Backticked words in the docs that look like configuration keys but are not.
NOT_KEYS = {"exabgp.conf", "bgp.passive"}  # a file name; an ExaBGP setting, not ours
MINIMAL = yaml.safe_load((SNIPPETS / "minimal.yaml").read_text())
VALIDATOR = Draft202012Validator(
    config_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
)


def key_schema(*path: str) -> dict[str, object]:
    """The schema of one key: names of properties, or "items" for a list's elements."""
    schema: dict[str, typing.Any] = config_schema()
    for name in path:
        schema = schema[name] if name == "items" else schema["properties"][name]
    return schema


def schema_errors(document: object) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


def parser_errors(document: object) -> list[str]:
    try:
        parse_config(document)
    except ConfigError as error:
        return [single.path for single in error.errors]
    return []


def test_shipped_schema_is_the_generated_one() -> None:
    assert SHIPPED.read_text() == schema_json(), (
        "config/announcer.schema.json is stale: run "
        "`python -m announcer.config.schema > config/announcer.schema.json`"
    )


def test_schema_is_a_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(config_schema())
    assert config_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_example_names_the_schema_for_editors() -> None:
    first = EXAMPLE.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./announcer.schema.json"


@pytest.mark.parametrize("source", VALID, ids=lambda path: str(path.relative_to(ROOT)))
def test_valid_documents_and_their_effective_form_validate(source: Path) -> None:
    document = yaml.safe_load(source.read_text())
    assert schema_errors(document) == []
    effective = yaml.safe_load(render_effective(parse_config(document)))
    assert schema_errors(effective) == []


def _schema_keys(schema: dict[str, typing.Any], prefix: str) -> Iterator[tuple[str, str]]:
    for name, value in schema.get("properties", {}).items():
        yield f"{prefix}{name}", value.get("description", "")
        yield from _schema_keys(value, f"{prefix}{name}.")
        yield from _schema_keys(value.get("items", {}), f"{prefix}{name}[].")


def _model_keys(cls: type, prefix: str) -> Iterator[str]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key, hint = f"{prefix}{field.name}", hints[field.name]
        yield key
        if typing.get_origin(hint) is tuple:
            key, hint = f"{key}[]", typing.get_args(hint)[0]
        if isinstance(hint, type) and hint.__name__.endswith("Config"):  # a section
            yield from _model_keys(hint, f"{key}.")


def test_every_model_key_has_a_short_description() -> None:
    described = dict(_schema_keys(config_schema(), ""))
    assert set(described) == set(_model_keys(Config, ""))
    for key, description in described.items():
        assert 10 < len(description) <= 120, key
        assert description.endswith("."), key


def test_keys_the_docs_name_exist() -> None:
    keys = {key for key, _ in _schema_keys(config_schema(), "")}
    pattern = re.compile(
        r"`((?:apiserver|bgp|announce|drain|loopback|status|exabgp|metrics)"
        r"(?:\.[a-z_0-9]+|\[\])+|vips|state_dir)`"
    )
    named = {
        (doc.name, key)
        for doc in DOCS
        for key in pattern.findall(doc.read_text())
        if key not in NOT_KEYS
    }
    assert len(named) > 10
    assert {(doc, key) for doc, key in named if key not in keys} == set()


def test_no_extra_keys_anywhere() -> None:
    def objects(schema: object) -> Iterator[dict[str, object]]:
        if isinstance(schema, dict):
            if "properties" in schema:
                yield schema
            for value in schema.values():
                yield from objects(value)

    found = list(objects(config_schema()))
    assert len(found) == 13  # top level, 10 sections, a neighbor and its bfd
    assert all(schema["additionalProperties"] is False for schema in found)


def _with(path: str, value: object) -> object:
    """The minimal document with one key set (or removed, for `...`)."""
    document = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    parent = document
    for key in parents:
        parent = parent[int(key)] if isinstance(parent, list) else parent.setdefault(key, {})
    if value is ...:
        del parent[last]
    else:
        parent[last] = value
    return document


INVALID = {
    "unknown top-level key": ("colour", "blue", "colour"),
    "unknown neighbor key": ("bgp.neighbors.0.passive", True, "bgp.neighbors[0].passive"),
    "missing bgp": ("bgp", ..., "bgp"),
    "missing peer_as": ("bgp.neighbors.0.peer_as", ..., "bgp.neighbors[0].peer_as"),
    "no neighbors": ("bgp.neighbors", [], "bgp.neighbors"),
    "hold time 2": ("bgp.hold_time", 2, "bgp.hold_time"),
    "AS 0": ("bgp.local_as", 0, "bgp.local_as"),
    "asdot out of range": ("bgp.local_as", "65536.1", "bgp.local_as"),
    "router id v6": ("bgp.router_id", "2001:db8::1", "bgp.router_id"),
    "vip /24": ("vips", ["198.51.100.0/24"], "vips[0]"),
    "no vips": ("vips", [], "vips"),
    "interval 0": ("apiserver.interval", 0, "apiserver.interval"),
    "rise as text": ("apiserver.rise", "3", "apiserver.rise"),
    "http url": ("apiserver.url", "http://127.0.0.1:6443", "apiserver.url"),
    "graceful shutdown community": ("announce.communities", ["65535:0"], "announce.communities[0]"),
    "community part too big": ("announce.communities", ["65536:1"], "announce.communities[0]"),
    "world-writable socket": ("status.mode", "0666", "status.mode"),
    "mode as a number": ("status.mode", 384, "status.mode"),
    "relative state dir": ("state_dir", "var/lib/announcer", "state_dir"),
    "exabgp as root": ("exabgp.user", "root", "exabgp.user"),
    "reserved setting": ("exabgp.settings", {"api.ack": False}, "exabgp.settings['api.ack']"),
    "metrics without port": ("metrics.listen", "127.0.0.1", "metrics.listen"),
    "bad family": ("bgp.neighbors.0.families", ["ipv5"], "bgp.neighbors[0].families[0]"),
    "long interface": ("loopback.interface", "x" * 16, "loopback.interface"),
}


@pytest.mark.parametrize(("path", "value", "error"), INVALID.values(), ids=INVALID.keys())
def test_mistakes_are_caught_by_schema_and_parser(path: str, value: object, error: str) -> None:
    document = _with(path, value)
    assert schema_errors(document) != []
    assert error in parser_errors(document)


# Spellings the parser accepts that a naive pattern would not.
ODD_BUT_VALID = [
    ("apiserver.url", "HTTPS://127.0.0.1:6443/"),
    ("apiserver.url", "https://[::1]:6443/prefix"),
    ("apiserver.server_name", "10.96.0.1"),
    ("apiserver.server_name", "fe80::1%eth0"),
    ("apiserver.interval", 60),
    ("apiserver.min_healthy", 0),
    ("vips", ["198.51.100.10/255.255.255.255", "198.51.100.12/032", "198.51.100.13"]),
    ("bgp.local_as", "0.1"),
    ("bgp.local_as", "0000065100"),
    ("bgp.neighbors.0.hold_time", 0),
    ("bgp.neighbors.0.families", ["ipv4"]),
    ("announce.communities", ["00000:65535", "no-export-subconfed"]),
    ("announce.med", 0),
    ("status.mode", "600"),
    ("status.group", "_svc.k8s-ops"),
    ("loopback.interface", "br-0.100@x"),
    ("exabgp.settings", {"reactor.speed": 5, "bgp.openwait": 30, "log.all": True}),
    ("metrics.listen", "[::1]:9470"),
]


@pytest.mark.parametrize(("path", "value"), ODD_BUT_VALID)
def test_odd_spellings_the_parser_accepts_validate(path: str, value: object) -> None:
    document = _with(path, value)
    assert parser_errors(document) == []
    assert schema_errors(document) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_whatever_the_parser_accepts_the_schema_accepts(document: object) -> None:
    if not parser_errors(document):
        event("valid")
        assert schema_errors(document) == []


def _accepted(schema: dict[str, object], value: str) -> bool:
    return Draft202012Validator(schema).is_valid(value)


def _parsed(convert: Callable[[object, str], object], value: str) -> bool:
    try:
        convert(value, "key")
    except ConfigError:
        return False
    return True


def _number(width: int) -> st.SearchStrategy[str]:
    # Around the limits, with leading zeros: where a hand-written range pattern goes wrong.
    limit = 10**width
    near = st.sampled_from([0, 1, 65535, 65536, 99999, 2**32 - 1, 2**32, limit - 1])
    return st.tuples(st.integers(0, limit) | near, st.integers(0, width + 1)).map(
        lambda pair: str(pair[0]).zfill(pair[1])
    )


@settings(max_examples=300, deadline=None)
@given(st.tuples(_number(6), _number(6)).map(":".join))
@example("65535:0")
@example("65535:00666")
@example("blackhole")
@example("no-export")
def test_community_pattern_is_the_parsers_rule(value: str) -> None:
    schema = key_schema("announce", "communities", "items")
    assert _accepted(schema, value) == _parsed(community, value)


@settings(max_examples=500, deadline=None)
@given(st.tuples(_number(11), _number(11), _number(11)).map(":".join))
@example("4294967295:4294967295:0004294967295")
@example("4294967296:0:0")
def test_large_community_pattern_is_the_parsers_rule(value: str) -> None:
    schema = key_schema("announce", "large_communities", "items")
    assert _accepted(schema, value) == _parsed(large_community, value)


@settings(max_examples=300, deadline=None)
@given(st.tuples(_number(6), _number(6)).map(".".join) | _number(11))
@example("65535.65535")
@example("4294967295")
def test_as_number_pattern_accepts_what_the_parser_accepts(value: str) -> None:
    schema = key_schema("bgp", "local_as")
    if _parsed(as_number, value):
        assert _accepted(schema, value)


def test_mode_pattern_is_the_parsers_rule() -> None:
    schema = key_schema("status", "mode")
    for width in (3, 4):
        for number in range(10**width):
            value = f"{number:0{width}d}"
            assert _accepted(schema, value) == _parsed(mode, value), value


def test_shipped_schema_is_plain_json() -> None:
    assert json.loads(SHIPPED.read_text()) == config_schema()

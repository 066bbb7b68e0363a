"""Fuzzing the configuration: whatever the document, the outcome is a Config or ConfigErrors
naming a path (never another exception), and through the CLI exit 0 or 2 (never a traceback).

Documents are valid ones with random leaves replaced by random YAML data, keys deleted and
unknown keys added.
"""

from __future__ import annotations

import copy
import tempfile
from datetime import date
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from announcer.cli import main
from announcer.config import Config, ConfigError, parse_config, render_effective

ROOT = Path(__file__).parent.parent
SOURCES = [
    Path(__file__).parent / "config_snippets" / "minimal.yaml",
    Path(__file__).parent / "config_snippets" / "dual-stack.yaml",
    ROOT / "config" / "announcer.example.yaml",
]
BASES = [yaml.safe_load(source.read_text()) for source in SOURCES]
Key = str | int

PLAUSIBLE = [
    "ipv4",
    "ipv6",
    "0600",
    "0777",
    "65000:1",
    "65000:1:2",
    "no-export",
    "blackhole",
    "65535:0",
    "1.10",
    "192.0.2.1",
    "192.0.2.9/32",
    "2001:db8::1",
    "2001:db8::9/128",
    "fe80::1%eth0",
    "0.0.0.0/0",
    "::",
    "https://127.0.0.1:6443",
    "http://x",
    "/etc/passwd",
    "/dev/zero",
    "/nonexistent/x",
    "relative/path",
    "a" * 300,
    "/" + "b" * 300,
    "x\ny",
    "x\r",
    "x\x00",
    "x\u2028y",
    "\ufeff",
    "reactor.speed",
    "api.respawn",
    "root",
    "lo",
    "[::1]:9470",
    "127.0.0.1:0",
    "",
    " ",
    "null",
    "true",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, 1, 2, 3, 179, 255, 256, 65535, 2**32 - 1, 2**32]),
    # past the 4300 digits Python refuses to print
    st.integers(min_value=4200, max_value=5000).map(lambda digits: 10**digits),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(PLAUSIBLE),
    st.binary(max_size=4),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 1, 1)),
)
keys = st.one_of(
    st.sampled_from(["address", "peer_as", "rise", "x", "reactor.speed", "api.ack"]),
    st.text(max_size=10),
    st.integers(min_value=-3, max_value=3),
    st.none(),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=8,
)


def locations(document: object, prefix: tuple[Key, ...] = ()) -> list[tuple[Key, ...]]:
    """Every key or index path in the document, containers included."""
    found: list[tuple[Key, ...]] = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += locations(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += locations(value, (*prefix, index))
    return found


def _seen_values(document: object, pool: dict[Key, list[object]]) -> dict[Key, list[object]]:
    if isinstance(document, dict):
        for key, value in document.items():
            pool.setdefault(key, []).append(value)
            _seen_values(value, pool)
    elif isinstance(document, list):
        for value in document:
            _seen_values(value, pool)
    return pool


# Values the valid documents use for each key: swapping them in keeps many documents valid,
# so that valid documents are fuzzed too (and round-tripped).
SEEN: dict[Key, list[object]] = {}
for base in BASES:
    _seen_values(base, SEEN)


def mutate(document: object, where: tuple[Key, ...], action: str, value: object) -> object:
    parent = document
    for key in where[:-1]:
        parent = parent[key]  # type: ignore[index]
    last = where[-1]
    if action == "delete":
        del parent[last]  # type: ignore[attr-defined]
    elif action == "add" and isinstance(parent, dict):
        parent[f"unknown_{len(parent)}"] = value
    else:
        parent[last] = value  # type: ignore[index]
    return document


@st.composite
def documents(draw: st.DrawFn) -> object:
    document = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        spots = locations(document)
        if not spots:
            break
        where = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["replace", "swap", "swap", "delete", "add"]))
        if action == "swap":
            value = copy.deepcopy(draw(st.sampled_from(SEEN.get(where[-1], [None]))))
        else:
            value = draw(values)
        document = mutate(document, where, action, value)
    if draw(st.integers(min_value=0, max_value=30)) == 0:
        document = draw(values)  # sometimes not even a mapping
    return document


def assert_names_paths(error: ConfigError) -> None:
    assert error.errors
    for single in error.errors:
        assert single.path
        assert str(single).startswith(f"{single.path}: ")
        assert "\n" not in str(single) and "\r" not in str(single)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_parse_returns_config_or_config_errors(document: object) -> None:
    try:
        config = parse_config(document)
    except ConfigError as error:
        event("invalid")
        assert_names_paths(error)
    else:
        event("valid")
        assert isinstance(config, Config)
        assert parse_config(yaml.safe_load(render_effective(config))) == config


@st.composite
def texts(draw: st.DrawFn) -> bytes:
    document = draw(documents())
    try:
        text = yaml.safe_dump(document, allow_unicode=True).encode()
    except ValueError:  # an integer too long to print: the YAML can still hold one
        text = b"bgp: {local_as: " + b"9" * 5000 + b"}\n"
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:position] + draw(st.binary(max_size=3)) + text[position:]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts())
def test_check_config_exits_0_or_2_with_paths(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "config.yaml"
        file.write_bytes(text)
        result = CliRunner().invoke(main, ["check-config", "--config", str(file)])
    assert result.exit_code in (0, 2), result.exception
    lines = result.stderr.splitlines()
    if result.exit_code == 0:
        assert lines[-1] == f"{file}: ok"
    else:
        assert lines and all(line.startswith("error: ") and ": " in line[7:] for line in lines)

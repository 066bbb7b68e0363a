"""Every containerlab/*.clab.yml is valid for containerlab's editor schema and for the lab
realiser; broken copies are caught, and the schema's two quirks under draft-07 are real."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import regex
import yaml
from jsonschema import Draft7Validator

from announcer.lab.clabfile import expand_env
from announcer.lab.clabschema import schema_errors
from announcer.lab.topology import TopologyError, load_topology

REPO = Path(__file__).resolve().parents[1]
# Kept beside the repository, not in it: see shared/reference/clab.schema.json.SOURCE.md.
SCHEMA = REPO / ".." / "shared" / "reference" / "clab.schema.json"
TOPOLOGIES = sorted((REPO / "containerlab").glob("*.clab.yml"))

Document = dict[str, object]


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    if not SCHEMA.is_file():
        pytest.skip(f"containerlab's clab.schema.json is not at {SCHEMA.resolve()}")
    loaded: dict[str, object] = json.loads(SCHEMA.read_text())
    return loaded


def typed(path: Path) -> Document:
    """The document as editors (and the schema) see it: YAML 1.1 types, `${VAR}` unset."""
    document: Document = yaml.safe_load(expand_env(path.read_text(), {}))
    return document


def test_there_are_topologies_to_check() -> None:
    assert TOPOLOGIES


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda path: path.name)
def test_topology_matches_the_schema(path: Path, schema: dict[str, object]) -> None:
    assert schema_errors(typed(path), schema) == []


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda path: path.name)
def test_topology_loads(path: Path) -> None:
    lab = load_topology(path, environ={})
    assert lab.nodes
    assert lab.links
    assert lab.vips()


# ---- broken copies --------------------------------------------------------------------------


def first_link(endpoints: list[str]) -> Callable[[Document], None]:
    def breaks(document: Document) -> None:
        document["topology"]["links"][0]["endpoints"] = endpoints  # type: ignore[index]

    return breaks


def add_to_r1(document: Document) -> None:
    document["topology"]["nodes"]["r1"]["bogus"] = 1  # type: ignore[index]


IFNAME = "is not a Linux interface name (1-15 bytes, no '/', ':' or whitespace, not '.' or '..')"

# (name, breakage, load_topology's error, schema_errors' findings: [] where the schema is blind)
BREAKAGES: list[tuple[str, Callable[[Document], None], str, list[str]]] = [
    (
        "unknown top-level key",
        lambda document: document.update(bogus=1),
        "bogus: unknown key",
        ["(top level): Additional properties are not allowed ('bogus' was unexpected)"],
    ),
    (
        "unknown node key",
        add_to_r1,
        "topology.nodes.r1.bogus: unknown key",
        ["topology.nodes.r1: Additional properties are not allowed ('bogus' was unexpected)"],
    ),
    (
        "one endpoint",
        first_link(["r1:eth1"]),
        "topology.links[0].endpoints: expected exactly 2 endpoints, got 1",
        ["topology.links[0].endpoints: expected exactly 2 endpoints, got 1"],
    ),
    (
        "three endpoints",
        first_link(["r1:eth1", "cp1:eth1", "cp1:eth2"]),
        "topology.links[0].endpoints: expected exactly 2 endpoints, got 3",
        ["topology.links[0].endpoints: expected exactly 2 endpoints, got 3"],
    ),
    (
        "undefined node",
        first_link(["r1:eth1", "cp9:eth1"]),
        "topology.links[0].endpoints[1]: 'cp9:eth1': node 'cp9' is not defined in topology.nodes",
        [],
    ),
    (
        "16-character interface name",
        first_link(["r1:eth1", "cp1:eth1234567890123"]),
        f"topology.links[0].endpoints[1]: 'cp1:eth1234567890123': 'eth1234567890123' {IFNAME}",
        [],
    ),
    (
        "interface name with '/'",
        first_link(["r1:ethernet-1/1", "cp1:eth1"]),
        f"topology.links[0].endpoints[0]: 'r1:ethernet-1/1': 'ethernet-1/1' {IFNAME}",
        [],
    ),
]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [(breakage, message) for _, breakage, message, _ in BREAKAGES],
    ids=[name for name, *_ in BREAKAGES],
)
def test_broken_copy_does_not_load(
    tmp_path: Path, breakage: Callable[[Document], None], message: str
) -> None:
    path = TOPOLOGIES[0]
    broken = copy.deepcopy(typed(path))
    breakage(broken)
    copied = tmp_path / path.name
    copied.write_text(yaml.safe_dump(broken, sort_keys=False))
    with pytest.raises(TopologyError) as caught:
        load_topology(copied, environ={})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("breakage", "findings"),
    [(breakage, findings) for _, breakage, _, findings in BREAKAGES],
    ids=[name for name, *_ in BREAKAGES],
)
def test_broken_copy_against_the_schema(
    schema: dict[str, object], breakage: Callable[[Document], None], findings: list[str]
) -> None:
    broken = copy.deepcopy(typed(TOPOLOGIES[0]))
    breakage(broken)
    assert schema_errors(broken, schema) == findings


# ---- the quirks -----------------------------------------------------------------------------


def test_plain_draft7_accepts_a_link_with_one_endpoint(schema: dict[str, object]) -> None:
    broken = copy.deepcopy(typed(TOPOLOGIES[0]))
    first_link(["r1:eth1"])(broken)
    assert Draft7Validator(schema).is_valid(broken)  # prefixItems is not a draft-07 keyword
    assert schema_errors(broken, schema) == [
        "topology.links[0].endpoints: expected exactly 2 endpoints, got 1"
    ]


def test_endpoint_patterns_are_applied_although_prefix_items_is_draft_2020(
    schema: dict[str, object],
) -> None:
    broken = copy.deepcopy(typed(TOPOLOGIES[0]))
    first_link(["r1", "cp1:eth1"])(broken)
    assert Draft7Validator(schema).is_valid(broken)
    assert schema_errors(broken, schema) == [
        "topology.links[0].endpoints[0]: 'r1' does not match '^\\\\S+:\\\\S+$'"
    ]


def test_python_re_cannot_compile_the_address_patterns(schema: dict[str, object]) -> None:
    definitions = schema["definitions"]
    assert isinstance(definitions, dict)
    pattern = definitions["ipv4-addr"]["pattern"]
    with pytest.raises(re.error, match=r"bad escape \\p"):
        re.compile(pattern)
    assert regex.fullmatch(pattern, "172.20.20.2%eth0")


def test_address_patterns_are_checked_with_the_regex_module(schema: dict[str, object]) -> None:
    node = {"kind": "linux", "mgmt-ipv4": "172.20.20.2", "ports": ["8080:80"]}
    document = {"name": "t", "topology": {"nodes": {"n": node}}}
    with pytest.raises(re.error):
        Draft7Validator(schema).is_valid(document)
    assert schema_errors(document, schema) == []
    node["mgmt-ipv4"] = "172.20.20.256"
    [finding] = schema_errors(document, schema)
    assert finding.startswith("topology.nodes.n.mgmt-ipv4: '172.20.20.256' does not match ")

"""`announcer check-config` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from announcer.cli import main
from announcer.config import parse_config

SNIPPETS = Path(__file__).parent / "config_snippets"


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    token = tmp_path / "token"
    token.write_text("never-printed-token\n")
    document = yaml.safe_load((SNIPPETS / "dual-stack.yaml").read_text())
    document["apiserver"].update(ca_file=str(ca), token_file=str(token))
    del document["exabgp"]["binary"]  # the one installed with the package
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(document))
    return file


def test_valid_file_exits_0(valid: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", "--config", str(valid)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == f"{valid}: ok"
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines()[:-1])


def test_print_writes_the_effective_configuration(valid: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", "--config", str(valid), "--print"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["apiserver"]["timeout"] == 0.35  # a default, filled in
    assert parse_config(printed) == parse_config(yaml.safe_load(valid.read_text()))
    assert "never-printed-token" not in result.output
    assert printed["apiserver"]["token_file"].endswith("/token")


def test_invalid_file_exits_2_with_one_line_per_error(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(
        "vips: [198.51.100.10/32]\n"
        "bgp:\n"
        "  router_id: 192.0.2.2\n"
        "  local_as: 65100\n"
        "  neighbors: [{address: 192.0.2.1, peer_as: 65000}, {address: 192.0.2.3, peer_as: abc}]\n"
        "apiserver: {rise: 0}\n"
    )
    result = CliRunner().invoke(main, ["check-config", "--config", str(file)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: apiserver.rise: 0 is not an integer in 1..100",
        "error: bgp.neighbors[1].peer_as: 'abc' is not an AS number",
    ]


def test_yaml_syntax_error_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("vips: [\n  a: b\n")
    result = CliRunner().invoke(main, ["check-config", "--config", str(file)])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {file}:")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {tmp_path / 'absent.yaml'}: cannot be read: No such file or directory\n"
    )


def test_default_path_is_etc_announcer() -> None:
    result = CliRunner().invoke(main, ["check-config", "--help"])
    assert result.exit_code == 0
    assert "/etc/announcer/config.yaml" in result.stdout

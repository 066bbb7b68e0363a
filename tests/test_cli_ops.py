"""`announcer config-schema`, and the least --shutdown-delay-duration that
`announcer check-config --print` states for the configuration it prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from announcer.cli import main, min_shutdown_delay
from announcer.config import parse_config
from announcer.config.schema import schema_json

REPO = Path(__file__).parent.parent
MINIMAL = {
    "vips": ["198.51.100.10/32"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
    },
}


def test_config_schema_prints_the_shipped_schema() -> None:
    result = CliRunner().invoke(main, ["config-schema"])
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_json()
    assert result.stdout == (REPO / "config" / "announcer.schema.json").read_text()


@pytest.mark.parametrize(
    ("interval", "timeout", "withdraw_wait", "seconds"),
    [
        (0.4, 0.35, 1.0, 3),  # the defaults: routers 1.25 s, this node's lo 2.15 s
        (0.4, 0.35, 0.0, 2),  # routers 1.25 s, lo 1.15 s
        (1.0, 0.5, 0.0, 3),  # routers 2.0 s, lo 2.5 s
        (0.2, 0.1, 0.0, 1),  # routers 0.8 s, lo 0.5 s
        (2.0, 1.9, 1.0, 7),  # routers 4.4 s, lo 6.9 s
        (0.3, 0.2, 0.0, 1),  # routers exactly 1.0 s, whatever the float rounding
    ],
)
def test_the_least_shutdown_delay_covers_routers_and_the_vip_on_lo(
    interval: float, timeout: float, withdraw_wait: float, seconds: int
) -> None:
    config = parse_config(
        {
            **MINIMAL,
            "apiserver": {"interval": interval, "timeout": timeout},
            "drain": {"withdraw_wait": withdraw_wait},
        }
    )
    assert min_shutdown_delay(config) == seconds


@pytest.mark.parametrize(
    ("apiserver", "line"),
    [
        ({}, "# kube-apiserver --shutdown-delay-duration: at least 3s for this configuration"),
        (
            {"interval": 2.0, "timeout": 1.9},
            "# kube-apiserver --shutdown-delay-duration: at least 7s for this configuration",
        ),
    ],
)
def test_check_config_print_ends_with_the_least_shutdown_delay(
    tmp_path: Path, apiserver: dict[str, float], line: str
) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump({**MINIMAL, "apiserver": apiserver}))
    result = CliRunner().invoke(main, ["check-config", "--print", "--config", str(file)])
    assert result.exit_code == 0, result.output
    tail = result.stdout.splitlines()[-4:]
    assert tail[0] == line
    assert all(text.startswith("#") for text in tail)
    interval = apiserver.get("interval", 0.4)
    assert f"apiserver.interval {interval:g} s" in tail[1]
    # Still a configuration: the comment changes nothing when the output is read back.
    assert parse_config(yaml.safe_load(result.stdout)) == parse_config(
        yaml.safe_load(file.read_text())
    )


def test_check_config_without_print_prints_nothing_on_stdout(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(MINIMAL))
    result = CliRunner().invoke(main, ["check-config", "--config", str(file)])
    assert (result.exit_code, result.stdout) == (0, "")

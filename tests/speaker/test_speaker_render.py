"""exabgp.conf rendering: golden files, ExaBGP's own validator, and what must be refused.

Regenerate the golden files under tests/golden/exabgp/ with
`ANNOUNCER_UPDATE_GOLDEN=1 pytest tests/speaker/test_speaker_render.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from announcer.config import Config, parse_config
from announcer.config.parse_host import RESERVED_SETTINGS
from announcer.speaker.errors import RenderError
from announcer.speaker.render import (
    ENVIRONMENT_FILE,
    FIXED_SETTINGS,
    RuntimePaths,
    render_environment,
    render_exabgp,
)

GOLDEN = Path(__file__).parent.parent / "golden" / "exabgp"
UPDATE = os.environ.get("ANNOUNCER_UPDATE_GOLDEN") == "1"
PYTHON = Path("/usr/bin/python3")
EXABGP = Path(sys.prefix) / "bin" / "exabgp"
PASSWORD = "s3cret-Pass!"  # noqa: S105 - test data

V4 = {"address": "192.0.2.1", "peer_as": 65000}
V6 = {"address": "2001:db8:1::1", "peer_as": 65000, "local_address": "2001:db8:1::2"}
CASES: dict[str, dict[str, object]] = {
    "v4-only": {"neighbors": [V4]},
    "dual-stack": {
        "neighbors": [
            {**V4, "local_address": "192.0.2.2", "hold_time": 3},
            V6,
        ],
        "vips": ["198.51.100.10/32", "2001:db8:100::10/128"],
    },
    "md5": {"neighbors": [{**V4, "password_file": "PASSWORD"}]},
    "md5-redacted": {"neighbors": [{**V4, "password_file": "PASSWORD"}], "redact": True},
    "ttl-security": {"neighbors": [{**V4, "ttl_security": True}]},
    "multihop": {
        "neighbors": [{"address": "203.0.113.1", "peer_as": 65000, "multihop": 3, "port": 1179}]
    },
    "ipv6-over-ipv4": {
        "neighbors": [
            {**V4, "families": ["ipv4", "ipv6"], "next_hop_ipv6": "2001:db8:1::2"},
        ],
        "vips": ["198.51.100.10/32", "2001:db8:100::10/128"],
    },
    "settings": {
        "neighbors": [V4],
        "settings": {"reactor.speed": 10, "log.level": "DEBUG", "log.packets": True},
        "heartbeat_timeout": 0.5,
    },
}


def make_config(case: str, directory: Path, *, state_dir: Path | None = None) -> Config:
    spec = CASES[case]
    password_file = directory / "password"
    password_file.write_text(PASSWORD + "\n")
    neighbors = [
        {k: str(password_file) if v == "PASSWORD" else v for k, v in neighbor.items()}
        for neighbor in spec["neighbors"]  # type: ignore[attr-defined]
    ]
    exabgp: dict[str, object] = {"user": "nobody"}
    for key in ("settings", "heartbeat_timeout"):
        if key in spec:
            exabgp[key] = spec[key]
    document: dict[str, object] = {
        "vips": spec.get("vips", ["198.51.100.10/32"]),
        "bgp": {"router_id": "192.0.2.2", "local_as": 65100, "neighbors": neighbors},
        "exabgp": exabgp,
    }
    if state_dir is not None:
        document["state_dir"] = str(state_dir)
    return parse_config(document)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_config_matches_the_golden_file(case: str, tmp_path: Path) -> None:
    config = make_config(case, tmp_path)
    text = render_exabgp(config, redact=bool(CASES[case].get("redact")), python=PYTHON)
    path = GOLDEN / f"{case}.conf"
    if UPDATE:
        path.write_text(text)
    assert path.read_text() == text, f"regenerate with ANNOUNCER_UPDATE_GOLDEN=1 and review {path}"


def test_golden_directory_has_no_stale_files() -> None:
    assert sorted(path.stem for path in GOLDEN.glob("*.conf")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_exabgp_accepts_the_rendered_config(case: str, tmp_path: Path) -> None:
    config = make_config(case, tmp_path, state_dir=tmp_path / "state")
    paths = RuntimePaths.of(config)
    paths.directory.mkdir(parents=True)
    paths.relay.write_text("")
    paths.relay.chmod(0o755)
    paths.config.write_text(render_exabgp(config, redact=False))
    result = validate(paths.config, render_environment(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_exabgp_validate_does_catch_a_broken_config(tmp_path: Path) -> None:
    config = make_config("v4-only", tmp_path)
    broken = render_exabgp(config, redact=False).replace("peer-as 65000;", "peer-as x;")
    (tmp_path / "exabgp.conf").write_text(broken)
    result = validate(tmp_path / "exabgp.conf", render_environment(config))
    assert result.returncode == 1


def validate(conf: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXABGP), "validate", str(conf)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_environment_fixes_what_the_daemon_depends_on(tmp_path: Path) -> None:
    env = render_environment(make_config("settings", tmp_path))
    assert env["exabgp.reactor.speed"] == "10"  # a default the operator may change
    assert env["exabgp.log.packets"] == "true"
    assert env["exabgp.daemon.user"] == "nobody"
    assert env["exabgp.log.statistics"] == "false"
    for key, value in FIXED_SETTINGS.items():
        assert env[f"exabgp.{key}"] == value


def test_fixed_settings_are_the_ones_the_configuration_reserves() -> None:
    assert {*FIXED_SETTINGS, "daemon.user"} == set(RESERVED_SETTINGS)


def test_a_setting_the_daemon_owns_is_refused(tmp_path: Path) -> None:
    config = make_config("v4-only", tmp_path)
    # The parser refuses these already; this is the renderer's own line of defence.
    exabgp = replace(config.exabgp, settings=(("api.ack", False),))
    with pytest.raises(RenderError, match=r"exabgp\.settings\.api\.ack: is set by the daemon"):
        render_environment(replace(config, exabgp=exabgp))


def test_redacted_render_does_not_read_the_password_file(tmp_path: Path) -> None:
    config = make_config("md5", tmp_path)
    (tmp_path / "password").unlink()
    assert 'md5-password "<redacted>";' in render_exabgp(config, redact=True)
    with pytest.raises(RenderError, match=r"bgp\.neighbors\[0\]\.password_file: .* does not exist"):
        render_exabgp(config, redact=False)


@pytest.mark.parametrize("password", ['a"b', "a'b", "a\\b", "a b", "x" * 81, ""])
def test_a_password_exabgp_would_misread_is_refused(password: str, tmp_path: Path) -> None:
    config = make_config("md5", tmp_path)
    (tmp_path / "password").write_text(password)
    with pytest.raises(RenderError, match=r"bgp\.neighbors\[0\]\.password_file"):
        render_exabgp(config, redact=False)


@pytest.mark.parametrize(
    ("state_dir", "message"),
    [("/var/lib/has space", "cannot run a path"), ("/" + "d" * 100, "too long a path")],
)
def test_an_unusable_state_dir_is_refused(state_dir: str, message: str, tmp_path: Path) -> None:
    config = make_config("v4-only", tmp_path, state_dir=Path(state_dir))
    with pytest.raises(RenderError, match=message):
        render_exabgp(config, redact=True)


def test_a_planted_exabgp_env_in_exabgps_prefix_changes_nothing(tmp_path: Path) -> None:
    """ExaBGP reads `<prefix>/etc/exabgp/exabgp.env` for every setting its environment
    leaves unset; with the daemon's environment it reads the daemon's file instead."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    exabgp = prefix / "bin" / "exabgp"
    shutil.copy2(EXABGP, exabgp)  # ExaBGP finds its prefix from its own path
    config = make_config("v4-only", tmp_path, state_dir=tmp_path / "state")
    paths = RuntimePaths.of(config)
    paths.directory.mkdir(parents=True)
    paths.environment.write_text(ENVIRONMENT_FILE)
    env = {"PATH": os.environ["PATH"], **render_environment(config)}

    def settings() -> str:
        done = subprocess.run(
            [str(exabgp), "env"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout

    clean = settings()
    planted = prefix / "etc" / "exabgp" / "exabgp.env"
    planted.parent.mkdir(parents=True)
    planted.write_text("[exabgp.log]\npackets = true\n\n[exabgp.tcp]\nbind = '203.0.113.66'\n")
    assert "packets = false" in clean
    assert settings() == clean

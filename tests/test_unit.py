"""The systemd unit against what real systemd showed: no start limit that leaves the node out
for good, a reload that validates first, the VIPs off lo on every exit path (ExecStopPost=
running `announcer cleanup`), a stop timeout that fits the longest drain; and the host checks
that tell an operator when the configuration does not fit the unit.

Running the unit under a real systemd is tests/lab/test_systemd.py's business.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from announcer.config import Config, parse_config
from announcer.config.unitcheck import (
    STOP_MARGIN,
    parse_timespan,
    read_stop_timeout,
    stop_timeout_warnings,
    unit_files,
    writable_path_warnings,
)

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "config/systemd/announcer.service"
SCHEMA = json.loads((ROOT / "config/announcer.schema.json").read_text())
ANNOUNCER = "/opt/announcer/bin/announcer"
CONFIG = "/etc/announcer/config.yaml"


def settings(section: str) -> list[tuple[str, str]]:
    """(key, value) of one section of the unit, in order, repeated keys included."""
    pairs, current = [], ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif "=" in line and not line.startswith("#") and current == section:
            key, value = line.split("=", 1)
            pairs.append((key, value))
    return pairs


def values(section: str, key: str) -> list[str]:
    return [value for name, value in settings(section) if name == key]


def config(**overrides: object) -> Config:
    bgp = {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
    }
    return parse_config({"vips": ["198.51.100.10/32"], "bgp": bgp, **overrides})


def test_no_start_limit_leaves_the_node_out_for_good() -> None:
    assert values("Unit", "StartLimitIntervalSec") == ["0"]
    assert values("Service", "Restart") == ["always"]


def test_reload_validates_the_file_before_signalling_the_daemon() -> None:
    assert values("Service", "ExecReload") == [
        f"{ANNOUNCER} check-config --config {CONFIG}",
        "/bin/kill -HUP $MAINPID",
    ]


def test_every_exit_path_runs_cleanup_of_the_same_configuration() -> None:
    (start,) = values("Service", "ExecStart")
    assert start == f"{ANNOUNCER} run --config {CONFIG}"
    assert values("Service", "ExecStopPost") == [f"{ANNOUNCER} cleanup --config {CONFIG}"]


def test_stop_timeout_fits_the_longest_drain_the_configuration_allows() -> None:
    drain = SCHEMA["properties"]["drain"]["properties"]
    longest = drain["delay"]["maximum"] + drain["withdraw_wait"]["maximum"]
    (timeout,) = values("Service", "TimeoutStopSec")
    seconds = parse_timespan(timeout)
    assert seconds is not None and seconds >= longest + STOP_MARGIN
    found = read_stop_timeout([UNIT])
    assert stop_timeout_warnings(config(drain={"delay": 300, "withdraw_wait": 60}), found) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("390", 390), ("6min 30s", 390), ("1min30s", 90), ("100ms", 0.1), ("5x", None)],
)
def test_timespans_read_as_systemd_reads_them(text: str, seconds: float | None) -> None:
    assert parse_timespan(text) == seconds


def test_a_drop_in_that_shortens_the_stop_timeout_is_warned_about(tmp_path: Path) -> None:
    lib, etc = tmp_path / "lib", tmp_path / "etc"
    lib.mkdir()
    shutil.copy(UNIT, lib / UNIT.name)
    drop_in = etc / f"{UNIT.name}.d/short.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text("[Service]\nTimeoutStopSec=30s\n")
    files = unit_files([lib, etc])
    assert files == [lib / UNIT.name, drop_in]
    found = read_stop_timeout(files)
    assert found == (30.0, drop_in)
    assert stop_timeout_warnings(config(), found) == []  # 3 + 1 + 15 s fit in 30 s
    assert stop_timeout_warnings(config(drain={"delay": 20}), found) == [
        "drain.delay: 20 s + drain.withdraw_wait 1 s + 15 s to stop ExaBGP do not fit in "
        f"TimeoutStopSec=30s ({drop_in}): systemd would kill the daemon mid-drain; raise "
        "TimeoutStopSec to at least 36s or lower the drain"
    ]


def test_paths_the_sandbox_keeps_read_only_are_warned_about() -> None:
    state, socket = Path("/srv/announcer"), Path("/srv/run/status.sock")
    checked = config(state_dir=str(state), status={"socket": str(socket)})
    read_only = {state, socket.parent}
    assert writable_path_warnings(checked, lambda path: path in read_only) == [
        f"state_dir: {state} is on a read-only file system here: under the unit's "
        "ProtectSystem=strict only /var/lib/announcer and /run/announcer are writable; use "
        "those, or add the directory to ReadWritePaths= in a drop-in",
        f"status.socket: {socket} is on a read-only file system here: under the unit's "
        "ProtectSystem=strict only /var/lib/announcer and /run/announcer are writable; use "
        "those, or add the directory to ReadWritePaths= in a drop-in",
    ]
    assert writable_path_warnings(config(), lambda path: path in read_only) == []


@pytest.mark.netns
def test_cleanup_removes_the_configured_vips_and_nothing_else(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare (util-linux) or ip (iproute2) is missing")
    file = tmp_path / "config.yaml"
    document = yaml.safe_load((ROOT / "config/announcer.example.yaml").read_text())
    file.write_text(yaml.safe_dump(document))
    # A throwaway network namespace that ends with the shell: nothing to clean up after.
    script = f"""
        set -e
        ip link set lo up
        ip addr add 198.51.100.10/32 dev lo scope host
        ip addr add 198.51.100.99/32 dev lo scope host
        ip addr add 2001:db8:100::10/128 dev lo nodad
        {sys.executable} -m announcer cleanup --config {file}
        {sys.executable} -m announcer cleanup --config {file}
        ip -j addr show dev lo
    """
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root)")
    done = subprocess.run(
        ["unshare", "--net", "bash", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    *said, addresses = done.stdout.splitlines()
    assert said == ["removed 198.51.100.10/32 from lo", "removed 2001:db8:100::10/128 from lo"]
    left = {info["local"] for info in json.loads(addresses)[0]["addr_info"]}
    assert left == {"127.0.0.1", "::1", "198.51.100.99"}

"""The fault matrix's daemon and ExaBGP rows (`matrix.ON_SYSTEMD`) on a lab whose
control-plane nodes boot a real systemd and run the Debian package's unit: the same rows,
the same bounds, with systemd (not the lab) starting a stopped daemon again. Also
`announcer lab status` reading each systemd node's daemon from inside the node.

Needs root, FRR, systemd-nspawn (Debian: systemd-container) and the package index; skips and
says why otherwise, or fails when ANNOUNCER_REQUIRE_NETNS=1. $ANNOUNCER_LAB_DEB names a
package to test instead of building one. Run it under the shared lab lock.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import systemd_lab

from announcer.lab import faults
from announcer.lab.matrix import FAULTS, ON_SYSTEMD
from announcer.lab.runner import Outcome, render_table, run_fault
from announcer.lab.topology import Topology
from announcer.lab.trial import Trial

pytestmark = pytest.mark.netns

ROOT = Path(__file__).parents[2]
NODES = ("cp1", "cp2", "cp3")


@pytest.fixture(scope="module")
def sd_lab(deb: Path) -> Iterator[Topology]:
    with systemd_lab(deb, "sdfaults", NODES) as (topology, _):
        yield topology


def test_every_systemd_row_names_a_fault_of_the_matrix() -> None:
    names = {fault.name for fault in FAULTS}
    assert not ON_SYSTEMD - names, ON_SYSTEMD - names


def test_lab_status_reads_each_systemd_node_from_inside(sd_lab: Topology) -> None:
    result = subprocess.run(
        [ROOT / ".venv/bin/announcer", "lab", "status", "--topology", sd_lab.path],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANNOUNCER_LAB_INIT": "systemd", "ANNOUNCER_LAB_NAME": "sdfaults"},
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "announcer:" in line]
    assert len(lines) == len(NODES)
    vips = len(sd_lab.vips())
    assert all(f"announcer: announcing {vips}/{vips} VIPs" in line for line in lines), result.stdout


def test_faults_status_and_commands_reach_the_node_inside(sd_lab: Topology) -> None:
    for node in NODES:
        pid = faults.container(sd_lab, node)
        assert pid is not None
        snapshot = faults.status(sd_lab, node, timeout=2.0)
        assert snapshot is not None and snapshot.get("announced") is True
        unit = faults.run_in_node(sd_lab, node, ["systemctl", "is-active", "announcer"])
        assert unit.stdout.strip() == "active"
        daemon = faults.find(sd_lab, node, "daemon")
        assert daemon is not None and "/opt/announcer/bin/announcer" in daemon.argv[:3]


def test_restart_node_restarts_the_units_and_the_node_announces_again(sd_lab: Topology) -> None:
    before = faults.find(sd_lab, "cp3", "daemon")
    assert before is not None
    faults.restart_node(sd_lab, "cp3")
    deadline = time.monotonic() + 30.0
    while not ((snapshot := faults.status(sd_lab, "cp3")) and snapshot.get("announced") is True):
        assert time.monotonic() < deadline, f"cp3 not announcing again: {snapshot}"
        time.sleep(0.1)
    after = faults.find(sd_lab, "cp3", "daemon")
    assert after is not None and after.pid != before.pid


def test_the_daemon_and_exabgp_rows_pass_on_systemd_nodes(sd_lab: Topology) -> None:
    chosen = [fault for fault in FAULTS if fault.name in ON_SYSTEMD]
    outcomes: list[Outcome] = []
    with Trial(sd_lab, say=print) as trial:
        for fault in chosen:
            outcome = run_fault(trial, fault)
            print(f"{'pass' if outcome.ok else 'FAIL'}  {fault.name}: {outcome.measured}")
            outcomes.append(outcome)
    print("\n" + render_table(outcomes, width=0))
    failed = [o for o in outcomes if not o.ok]
    assert not failed, render_table(failed, width=0)

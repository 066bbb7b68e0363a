"""The lab with systemd control-plane nodes (`announcer.lab/init: systemd`): each boots a real
systemd, installs the Debian package with apt-get and runs `systemctl start announcer`.
What real systemd does with the unit is measured against r1's FIB and each node's `lo`.

Needs root, FRR, systemd-nspawn (Debian: systemd-container) and the package index (the
package is built once for the module); skips and says why otherwise, or fails when
ANNOUNCER_REQUIRE_NETNS=1. Run it under the shared lab lock.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

import pytest
from conftest import systemd_lab

from announcer.config.unitcheck import parse_timespan
from announcer.lab import realiser, sysnode
from announcer.lab.bench.traffic import Failures, LoadClient, in_flight, split_failures
from announcer.lab.fib import Fib, wait_for
from announcer.lab.topology import Topology
from announcer.lab.watch import FibWatcher

pytestmark = pytest.mark.netns

ROOT = Path(__file__).parents[2]
VIP4 = ip_network("198.51.100.10/32")
NODES = ("cp1", "cp2", "cp3")
KILL_WITHDRAWN = 0.5  # SIGKILL -> out of r1's FIB (PR_SET_PDEATHSIG takes ExaBGP along)
VIP_OFF_LO = 1.0  # main process exit -> VIP off lo (ExecStopPost=announcer cleanup)
BACK_IN = 20.0  # restart + rise + min_healthy, with room for a loaded machine
RATE = 200.0  # the benchmark's new connections per second
HEARTBEAT_TIMEOUT = 2.0  # exabgp.heartbeat_timeout's default: the relay's bound


@dataclass(frozen=True)
class Node:
    """A booted control-plane node: its namespace, its container's PID 1 and root tree."""

    name: str
    netns: str
    pid: int
    root: Path

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *argv],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            pytest.fail(f"{self.name}: {' '.join(argv)}: exit {result.returncode}\n{result.stderr}")
        return result

    def show(self, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, "announcer.service").stdout.strip()

    def main_pid(self) -> int:
        return int(self.show("MainPID"))

    def vip_on_lo(self) -> bool:
        out = subprocess.run(
            ["ip", "-n", self.netns, "-j", "addr", "show", "dev", "lo"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return any(a["local"] == str(VIP4.network_address) for a in json.loads(out)[0]["addr_info"])

    def daemon_host_pid(self) -> int:
        """The daemon's pid as the host sees it (MainPID is the container's view)."""
        for pid in realiser.netns.netns_pids(self.netns):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "announcer":
                    return pid
        raise AssertionError(f"{self.name}: no announcer process")

    def journal(self) -> str:
        return self.run("journalctl", "-u", "announcer.service", "-o", "cat", "--no-pager").stdout


@dataclass(frozen=True)
class SystemdLab:
    topology: Topology
    up_seconds: float
    nodes: dict[str, Node]

    @property
    def router(self) -> str:
        return self.topology.netns("r1")

    def paths(self) -> int:
        with Fib(self.router) as fib:
            return len(fib.nexthops(VIP4))


@pytest.fixture(scope="module")
def deb_next(deb: Path) -> Path:
    """The same code as a later version: an upgrade of `deb`."""
    version = deb.name.split("_")[1] + "+1"
    built = subprocess.run(
        ["bash", ROOT / "scripts/build-deb", "--output", deb.parent, "--version", version],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        pytest.fail(f"scripts/build-deb failed:\n{built.stderr[-3000:]}")
    return Path(built.stdout.split()[-1])


@pytest.fixture(scope="module")
def lab(deb: Path) -> Iterator[SystemdLab]:
    with systemd_lab(deb, "sd", NODES) as (topology, took):
        record = realiser.Record.load(topology.lab_dir / realiser.STATE_FILE)
        assert record is not None
        nspawns = {str(p["node"]): int(p["pid"]) for p in record.processes}
        nodes = {
            name: Node(
                name,
                topology.netns(name),
                sysnode.container_pid(nspawns[name]),
                topology.node_dir(name) / "systemd" / "m",
            )
            for name in NODES
        }
        yield SystemdLab(topology, took, nodes)
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(topology.lab_dir) in line]  # fmt: skip


def after_fault(lab: SystemdLab, node: Node, host_pid: int, timeout: float) -> dict[str, float]:
    """Seconds from now until the daemon exited, the VIP left lo, and r1 dropped the node."""
    start, seen = time.monotonic(), {}
    checks = {
        "exit": lambda: realiser.netns.process_id(host_pid) is None,
        "lo": lambda: not node.vip_on_lo(),
        "fib": lambda: lab.paths() == len(NODES) - 1,
    }
    while len(seen) < len(checks) and time.monotonic() - start < timeout:
        for name, check in checks.items():
            if name not in seen and check():
                seen[name] = time.monotonic() - start
        time.sleep(0.005)
    assert len(seen) == len(checks), f"after {timeout} s only {seen}"
    return seen


def wait_paths(lab: SystemdLab, count: int, timeout: float) -> float:
    start = time.monotonic()
    wait_for(lambda: lab.paths() == count, timeout, interval=0.01, what=f"{count} paths")
    return time.monotonic() - start


def test_every_node_announces_after_systemctl_start_and_logs_events(lab: SystemdLab) -> None:
    assert lab.paths() == len(NODES)
    for node in lab.nodes.values():
        assert node.show("ActiveState") == "active"
        assert node.run("dpkg-query", "-W", "-f=${Status}", "announcer").stdout == (
            "install ok installed"
        )
        journal = node.journal()
        # READY=1 (systemd's "Started") only once the relay connected and a probe ran.
        events = [line for line in journal.splitlines() if "event=" in line or "Started" in line]
        ready = next(i for i, line in enumerate(events) if "Started" in line)
        assert any("event=ready" in line for line in events[:ready]), journal
        status = node.run("systemctl", "status", "--no-pager", "-n", "20", "announcer", check=False)
        assert "event=" in status.stdout
        assert node.run("announcer", "status", check=False).returncode == 0


def test_sigkill_withdraws_cleans_lo_and_systemd_restarts(lab: SystemdLab) -> None:
    node = lab.nodes["cp1"]
    restarts = int(node.show("NRestarts"))
    pid = node.main_pid()
    assert node.vip_on_lo()
    host_pid = node.daemon_host_pid()
    os.kill(host_pid, 9)
    seen = after_fault(lab, node, host_pid, 10.0)
    withdrawn, off_lo = seen["fib"], seen["lo"] - seen["exit"]
    print(f"SIGKILL: out of r1's FIB {withdrawn:.2f} s, VIP off lo {off_lo:.2f} s after exit")
    assert withdrawn <= KILL_WITHDRAWN
    assert off_lo <= VIP_OFF_LO
    back = wait_paths(lab, len(NODES), BACK_IN)
    print(f"SIGKILL: announced again after {back + withdrawn:.2f} s")
    assert int(node.show("NRestarts")) == restarts + 1
    assert node.main_pid() != pid


def test_reload_of_a_broken_file_fails_and_keeps_routes(lab: SystemdLab) -> None:
    node = lab.nodes["cp2"]
    config = node.root / "etc/announcer/config.yaml"
    good = config.read_text()
    pid = node.main_pid()
    try:
        config.write_text(good + "\nbogus_key: 1\n")
        reload = node.run("systemctl", "reload", "announcer", check=False)
        assert reload.returncode != 0
        assert "bogus_key" in node.journal()
        assert node.main_pid() == pid and node.show("ActiveState") == "active"
        assert lab.paths() == len(NODES)
    finally:
        config.write_text(good)
    assert node.run("systemctl", "reload", "announcer").returncode == 0
    assert lab.paths() == len(NODES)


def test_ten_crashes_in_a_row_do_not_leave_the_node_out(lab: SystemdLab) -> None:
    node = lab.nodes["cp3"]
    for _ in range(10):
        pid = wait_for(lambda: node.main_pid(), 10.0, interval=0.02, what="a main process")
        node.run("kill", "-KILL", str(pid))
        wait_for(lambda p=pid: node.main_pid() != p, 10.0, interval=0.02, what="a restart")
    assert node.show("ActiveState") != "failed"  # the start limit would have ended it here
    back = wait_paths(lab, len(NODES), BACK_IN)
    print(f"ten SIGKILLs: announced again {back:.2f} s after the last")
    assert node.show("ActiveState") == "active"
    assert node.vip_on_lo()


def test_systemctl_stop_drains_withdraws_and_exits_in_time(lab: SystemdLab) -> None:
    node = lab.nodes["cp1"]
    wait_paths(lab, len(NODES), BACK_IN)
    start = time.monotonic()
    node.run("systemctl", "stop", "announcer")
    took = time.monotonic() - start
    timeout = sysnode_timeout(node)
    print(f"systemctl stop: {took:.2f} s (TimeoutStopSec {timeout:g} s)")
    assert took < timeout
    assert (node.show("Result"), node.show("ExecMainStatus")) == ("success", "0")
    assert lab.paths() == len(NODES) - 1
    assert not node.vip_on_lo()
    journal = node.journal()
    assert re.search(r"event=withdraw", journal), journal
    node.run("systemctl", "start", "announcer")
    wait_paths(lab, len(NODES), BACK_IN)


def sysnode_timeout(node: Node) -> float:
    seconds = parse_timespan(node.show("TimeoutStopUSec"))
    assert seconds is not None
    return seconds


def test_sigstop_relay_withdraws_then_the_watchdog_restarts(lab: SystemdLab) -> None:
    node = lab.nodes["cp3"]
    wait_paths(lab, len(NODES), BACK_IN)
    restarts, host_pid = int(node.show("NRestarts")), node.daemon_host_pid()
    os.kill(host_pid, 19)  # SIGSTOP: a frozen daemon
    seen = after_fault(lab, node, host_pid, 30.0)  # WatchdogSec=5s, then SIGABRT
    withdrawn, off_lo = seen["fib"], seen["lo"] - seen["exit"]
    back = wait_paths(lab, len(NODES), BACK_IN)
    print(
        f"SIGSTOP: out of r1's FIB in {withdrawn:.2f} s (relay), VIP off lo {off_lo:.2f} s "
        f"after the watchdog's abort, announced again {back:.2f} s later"
    )
    assert withdrawn <= HEARTBEAT_TIMEOUT + 0.5
    assert off_lo <= VIP_OFF_LO
    assert int(node.show("NRestarts")) == restarts + 1
    assert "watchdog" in node.journal().lower()


def test_a_unit_ordered_after_announcer_starts_once_it_is_ready(lab: SystemdLab) -> None:
    # The kubelet's stand-in: `Wants=` and `After=announcer.service`, as on a host.
    node = lab.nodes["cp1"]
    saw = node.root / "var/tmp/kubelet-saw"
    (node.root / "etc/systemd/system/lab-kubelet.service").write_text(
        "[Unit]\nWants=announcer.service\nAfter=announcer.service\n[Service]\nType=oneshot\n"
        "ExecStart=/bin/sh -c 'systemctl show -P ActiveState announcer >/var/tmp/kubelet-saw; "
        "announcer status --json >>/var/tmp/kubelet-saw; true'\n"
    )
    node.run("systemctl", "daemon-reload")
    node.run("systemctl", "stop", "announcer")
    wait_paths(lab, len(NODES) - 1, 10.0)
    node.run("systemctl", "start", "lab-kubelet.service")
    state, status = saw.read_text().split("\n", 1)
    assert state == "active"
    assert isinstance(json.loads(status), dict)  # the daemon answered on its status socket
    wait_paths(lab, len(NODES), BACK_IN)


def test_cold_boot_announcer_is_ready_before_a_unit_ordered_after_it(lab: SystemdLab) -> None:
    # The node boots again from its own disk (the overlay stays mounted), with announcer and
    # the kubelet's stand-in enabled: systemd must start the stand-in only once announcer is
    # READY.
    node = lab.nodes["cp2"]
    saw = node.root / "var/tmp/kubelet-boot"
    (node.root / "etc/systemd/system/lab-kubelet-boot.service").write_text(
        "[Unit]\nWants=announcer.service\nAfter=announcer.service\n[Service]\nType=oneshot\n"
        "ExecStart=/bin/sh -c 'systemctl show -P ActiveState announcer >/var/tmp/kubelet-boot; "
        "announcer status --json >>/var/tmp/kubelet-boot; true'\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    node.run("systemctl", "enable", "--quiet", "announcer", "lab-kubelet-boot.service")
    stat = Path(f"/proc/{node.pid}/stat").read_text()
    nspawn = int(stat[stat.rindex(")") + 2 :].split()[1])
    sysnode.power_off([nspawn])
    wait_paths(lab, len(NODES) - 1, 10.0)
    run_dir = lab.topology.node_dir(node.name) / "run"
    log = lab.topology.node_dir(node.name) / "log" / "main.log"
    again = sysnode.boot(netns=node.netns, root=node.root, run_dir=run_dir, log=log)
    pid = sysnode.container_pid(again)
    lab.nodes[node.name] = Node(node.name, node.netns, pid, node.root)
    sysnode.wait_booted(pid)
    state, status = saw.read_text().split("\n", 1)
    assert state == "active"
    assert isinstance(json.loads(status), dict)
    back = wait_paths(lab, len(NODES), BACK_IN)
    print(f"cold boot: every node announces {back:.2f} s after the node finished booting")


def test_an_exabgp_its_user_cannot_run_fails_the_start_naming_the_cause(lab: SystemdLab) -> None:
    node = lab.nodes["cp3"]
    wait_paths(lab, len(NODES), BACK_IN)
    bin_dir = node.root / "opt/announcer/bin"
    restarts = int(node.show("NRestarts"))
    # The unit's ExecStartPre (check-config) names it before the daemon would try to start it
    # (the daemon's own give-up after identical start failures: test_speaker_start_failure).
    expected = (
        "error: exabgp.binary: '/opt/announcer/bin/exabgp' cannot be executed by the user 'exabgp'"
    )
    bin_dir.chmod(0o700)  # as a virtualenv under /root would be, for the exabgp user
    try:
        os.kill(node.daemon_host_pid(), 9)
        wait_for(lambda: expected in node.journal(), 60.0, interval=0.5, what=expected)
        wait_for(lambda: int(node.show("NRestarts")) >= restarts + 2, 30.0, interval=0.2)
        assert lab.paths() == len(NODES) - 1
    finally:
        bin_dir.chmod(0o755)
    back = wait_paths(lab, len(NODES), 60.0)
    print(f"ExaBGP unrunnable: named in the journal; announced {back:.2f} s after the fix")


def under_load(lab: SystemdLab, out: Path, action: Callable[[], object]) -> Failures:
    """Run `action` under the benchmark's load until every node announces again; the failed
    requests split into those in flight at one of r1's FIB changes and the others."""
    vip = str(VIP4.network_address)
    with (
        FibWatcher(lab.router, [VIP4]) as watcher,
        LoadClient(lab.topology, vip, out=out, rate=RATE) as client,
    ):
        wait_for(lambda: len(watcher.history(VIP4)) >= 1, 5.0)
        action()
        wait_paths(lab, len(NODES), BACK_IN)
        requests = client.stop()
    changes = [change.at for change in watcher.history(VIP4)[1:]]
    assert len(changes) >= 2, changes  # out of the ECMP set, then back in
    failures = split_failures(requests, changes)
    if failures.other:
        others = [r for r in requests if not r.ok and not in_flight(r, changes)]
        print("FIB changes:", changes, "\nother failures:", others)
    return failures


def test_restart_under_load_fails_only_requests_in_flight_at_a_fib_change(
    lab: SystemdLab, tmp_path: Path
) -> None:
    node = lab.nodes["cp1"]
    wait_paths(lab, len(NODES), BACK_IN)
    restart = functools.partial(node.run, "systemctl", "restart", "announcer")
    failures = under_load(lab, tmp_path / "requests.jsonl", restart)
    print(f"systemctl restart at {RATE:g}/s: {failures}")
    assert failures.total > RATE and failures.other == 0, failures


def test_the_package_upgrades_over_itself_with_the_service_running(
    lab: SystemdLab, deb_next: Path, tmp_path: Path
) -> None:
    node = lab.nodes["cp2"]
    wait_paths(lab, len(NODES), BACK_IN)
    config = node.root / "etc/announcer/config.yaml"
    kept, pid = config.read_text(), node.main_pid()
    shutil.copy(deb_next, node.root / "var/tmp" / deb_next.name)
    upgrade = functools.partial(
        node.run, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
        f"/var/tmp/{deb_next.name}",
    )  # fmt: skip
    failures = under_load(lab, tmp_path / "requests.jsonl", upgrade)
    print(f"upgrade N -> N+1 at {RATE:g}/s: {failures}")
    assert failures.total > RATE and failures.other == 0, failures
    version = node.run("dpkg-query", "-W", "-f=${Version}", "announcer").stdout
    assert version == deb_next.name.split("_")[1]
    assert node.show("ActiveState") == "active" and node.main_pid() != pid
    assert config.read_text() == kept  # the operator's conffile
    old = node.run("journalctl", f"_PID={pid}", "-o", "cat", "--no-pager").stdout
    assert "SIGTERM: stopping" in old, old  # prerm's stop: the two-phase drain


def test_remove_stops_purge_clears_and_a_first_install_does_not_start(
    lab: SystemdLab, deb: Path
) -> None:
    node = lab.nodes["cp3"]
    wait_paths(lab, len(NODES), BACK_IN)
    apt = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q")
    node.run(*apt, "remove", "announcer")
    assert node.show("ActiveState") in ("inactive", "")
    assert lab.paths() == len(NODES) - 1 and not node.vip_on_lo()
    assert (node.root / "etc/announcer/config.yaml").exists()  # kept until purge
    node.run(*apt, "purge", "announcer")
    assert not (node.root / "etc/announcer").exists()
    assert not (node.root / "var/lib/announcer").exists()
    assert not (node.root / "opt/announcer").exists()
    # Installing afresh neither enables nor starts it: the operator configures it first.
    shutil.copy(deb, node.root / "var/tmp" / deb.name)
    node.run(*apt, "install", f"/var/tmp/{deb.name}")
    state = node.run("systemctl", "is-active", "announcer", check=False).stdout.strip()
    enabled = node.run("systemctl", "is-enabled", "announcer", check=False).stdout.strip()
    assert (state, enabled) == ("inactive", "disabled")

"""The lab realised with network namespaces and host FRR: up, reachability of the VIPs through
r1's ECMP, the CLI, and down from full and half states.

The lifecycle tests come first and each brings its own lab up and down (`clean_lab`); the rest
share one lab (`lab`, module scope). Every one of them leaves no lab behind, even on failure.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from announcer.lab import frr, launch, netns, node, realiser
from announcer.lab.cli import lab as lab_cli
from announcer.lab.fib import Fib, wait_for
from announcer.lab.netns import LabError, ProcessId
from announcer.lab.topology import Topology

if TYPE_CHECKING:
    from conftest import RunningLab

# Lab tests are skipped (or fail, under ANNOUNCER_REQUIRE_NETNS=1) by the `lab_topology` fixture
# without root/FRR; the parsing tests at the top run anywhere.
netns_test = pytest.mark.netns


def quiet(_: str) -> None:
    pass


VIP4, VIP6 = "198.51.100.10", "2001:db8:100::10"
CP_GATEWAYS = {
    4: {ip_address(f"192.0.2.{n}") for n in (2, 6, 10)},
    6: {ip_address(f"2001:db8:{n}::2") for n in (1, 2, 3)},
}
UP_BUDGET = 20.0


def lab_processes(topology: Topology) -> set[ProcessId]:
    prefix = realiser.namespace_prefix(topology)
    return {
        proc
        for name in netns.list_netns(prefix)
        for pid in netns.netns_pids(name)
        if (proc := netns.process_id(pid)) is not None
    }


def missing_destinations(topology: Topology) -> set[Path]:
    dests = {Path(b.destination) for spec in topology.nodes.values() for b in spec.binds}
    return {dest for dest in dests if not dest.exists()}


def assert_clean(topology: Topology, procs: set[ProcessId], missing: set[Path]) -> None:
    assert netns.list_netns(realiser.namespace_prefix(topology)) == []
    assert [p.pid for p in procs if netns.alive(p)] == []
    assert sorted(frr.FRR_RUN_DIR.glob(f"{realiser.namespace_prefix(topology)}*")) == []
    assert not topology.lab_dir.exists()
    assert {dest for dest in missing if dest.exists()} == set()


def assert_converged(topology: Topology) -> None:
    peers = frr.bgp_peers(topology.netns("r1"))
    assert len(peers) == 6
    assert {p.state for p in peers} == {"Established"}
    with Fib(topology.netns("r1")) as fib:
        for vip in topology.vips():
            assert fib.nexthops(vip) == CP_GATEWAYS[vip.version]


def curl_version(topology: Topology, address: str, *, timeout: float = 3.0) -> dict[str, str]:
    """GET /version from the client node, TLS verified against the lab CA as `kubernetes`."""
    host = f"[{address}]" if ":" in address else address
    argv = [
        "ip", "netns", "exec", topology.netns("client"), "curl", "-sS", "--fail",
        "--max-time", str(timeout), "--cacert", str(topology.lab_dir / "pki" / "ca.crt"),
        "--resolve", f"kubernetes:6443:{host}", "https://kubernetes:6443/version",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    answer: dict[str, str] = json.loads(result.stdout)
    return answer


# ---- parsing, no lab needed ---------------------------------------------------------------------


def test_daemons_file_gives_enabled_daemons_zebra_first_and_their_options() -> None:
    text = "# comment\nbgpd=yes\nzebra=yes\nospfd=no\nvtysh_enable=yes\n"
    text += 'zebra_options=" -A 127.0.0.1 -s 90000000"\nbgpd_options="  -A 127.0.0.1"\n'
    daemons = frr.parse_daemons(text)
    assert daemons.enabled == ("zebra", "bgpd")
    assert daemons.options == {
        "zebra": ("-A", "127.0.0.1", "-s", "90000000"),
        "bgpd": ("-A", "127.0.0.1"),
    }


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("/a:/b", (Path("/a"), Path("/b"), False)),
        ("/a:/b:ro", (Path("/a"), Path("/b"), True)),
        ("/a:/b:rw", (Path("/a"), Path("/b"), False)),
    ],
)
def test_launcher_bind_syntax(spec: str, parsed: tuple[Path, Path, bool]) -> None:
    assert launch.parse_bind(spec) == parsed


@pytest.mark.parametrize("spec", ["/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x"])
def test_launcher_rejects_bad_binds(spec: str) -> None:
    with pytest.raises(launch.LaunchError, match="expected /SOURCE:/DESTINATION"):
        launch.parse_bind(spec)


def test_launcher_refuses_to_mount_in_the_callers_mount_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def forbidden(*args: object) -> None:
        raise AssertionError(f"called with {args}")

    monkeypatch.setattr(launch, "_mount", forbidden)
    monkeypatch.setattr(launch.os, "execvp", forbidden)
    argv = ["--outside-mntns", launch.mount_namespace(), "--bind", f"{tmp_path}:{tmp_path}"]
    assert launch.main([*argv, "--", "true"]) == 125
    assert "refusing to mount on the host" in capsys.readouterr().err


def test_node_vips_from_the_label() -> None:
    assert node.parse_vips("198.51.100.10/32, 2001:db8:100::10/128") == (
        "198.51.100.10/32",
        "2001:db8:100::10/128",
    )
    with pytest.raises(node.NodeError, match="'nope'"):
        node.parse_vips("198.51.100.10/32,nope")


def test_node_speaker_is_plain_exabgp_until_there_is_an_announcer_config(tmp_path: Path) -> None:
    plain = node.choose_speaker(tmp_path)
    assert (plain.child.name, plain.vips_on_lo) == ("exabgp", True)
    assert plain.child.argv[-1] == str(tmp_path / "exabgp.conf")
    assert plain.child.env["exabgp_api_cli"] == "false"
    (tmp_path / "config.yaml").write_text("{}\n")
    daemon = node.choose_speaker(tmp_path)
    assert (daemon.child.name, daemon.vips_on_lo) == ("announcer", False)


# ---- lifecycle: each test its own lab ----------------------------------------------------------


@netns_test
def test_five_up_down_cycles_each_from_nothing(clean_lab: Topology) -> None:
    missing = missing_destinations(clean_lab)
    ups, downs = [], []
    for _ in range(5):
        ups.append(realiser.up(clean_lab, say=quiet))
        assert_converged(clean_lab)
        procs = lab_processes(clean_lab)
        assert len(procs) >= 10
        downs.append(realiser.down(clean_lab, say=quiet))
        assert_clean(clean_lab, procs, missing)
    print("up (s):", *(f"{t:.2f}" for t in ups), "; down (s):", *(f"{t:.2f}" for t in downs))
    assert max(ups) <= UP_BUDGET


@netns_test
def test_half_up_lab_made_by_hand_is_refused_then_cleaned(clean_lab: Topology) -> None:
    name = clean_lab.netns("cp2")
    netns.add_netns(name)
    sleeper = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "600"])
    try:
        wait_for(lambda: sleeper.pid in netns.netns_pids(name), 5.0, what="sleeper in cp2")
        result = CliRunner().invoke(lab_cli, ["up", "--topology", str(clean_lab.path)])
        assert result.exit_code == 1
        assert f"namespace {name}" in result.output
        assert "announcer lab down" in result.output
        procs = lab_processes(clean_lab)
        realiser.down(clean_lab, say=quiet)
        sleeper.wait(timeout=5)
        assert_clean(clean_lab, procs, set())
    finally:
        sleeper.kill()
        sleeper.wait()


@netns_test
def test_realiser_killed_half_way_leaves_what_down_cleans(clean_lab: Topology) -> None:
    missing = missing_destinations(clean_lab)
    argv = [sys.executable, "-m", "announcer", "lab", "up", "--topology", str(clean_lab.path)]
    up = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = clean_lab.lab_dir / realiser.STATE_FILE
    try:
        # Killed once node processes run but before the lab has converged.
        wait_for(lambda: (r := realiser.Record.load(record)) and r.processes, 20.0, interval=0.005)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    procs = lab_processes(clean_lab)
    assert procs
    with pytest.raises(LabError, match="announcer lab down"):
        realiser.up(clean_lab, say=quiet)
    realiser.down(clean_lab, say=quiet)
    assert_clean(clean_lab, procs, missing)


# ---- one shared lab -----------------------------------------------------------------------------


@netns_test
def test_up_from_nothing_converges_within_budget(lab: RunningLab) -> None:
    assert 0 < lab.up_seconds <= UP_BUDGET
    assert_converged(lab.topology)
    for vip in (f"{VIP4}/32", f"{VIP6}/128"):
        family = "ipv4" if ":" not in vip else "ipv6"
        route = frr.vtysh_json(lab.topology.netns("r1"), f"show bgp {family} unicast {vip} json")
        paths = route["paths"]
        assert isinstance(paths, list)
        assert len(paths) == 3
        assert all(p.get("multipath") or p.get("bestpath") for p in paths)


@netns_test
def test_up_again_says_already_up(lab: RunningLab) -> None:
    said: list[str] = []
    assert realiser.up(lab.topology, say=said.append) == 0.0
    assert said == [f"lab {lab.topology.name} is already up"]


@netns_test
def test_only_the_vips_reach_r1(lab: RunningLab) -> None:
    for family, vip in (("ipv4", f"{VIP4}/32"), ("ipv6", f"{VIP6}/128")):
        table = frr.vtysh_json(lab.topology.netns("r1"), f"show bgp {family} unicast json")
        routes = table["routes"]
        assert isinstance(routes, dict)
        assert set(routes) == {vip}


@netns_test
@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_client_reaches_the_vip_on_several_nodes(lab: RunningLab, vip: str) -> None:
    answers = collections.Counter(curl_version(lab.topology, vip)["node"] for _ in range(60))
    print(f"{vip}: {dict(sorted(answers.items()))}")
    assert set(answers) <= {"cp1", "cp2", "cp3"}
    assert len(answers) >= 2


@netns_test
def test_exec_runs_inside_the_node_with_its_binds(lab: RunningLab) -> None:
    def lab_exec(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "announcer", "lab", "exec", *argv]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    ca = lab_exec("client", "--", "cat", "/etc/announcer-lab/ca.crt")
    assert ca.stdout == (lab.topology.lab_dir / "pki" / "ca.crt").read_text()
    sock = lab_exec("cp1", "--", "test", "-S", "/run/announcer/lab-apiserver.sock")
    assert sock.returncode == 0
    assert lab_exec("cp1", "--", "sh", "-c", "exit 7").returncode == 7
    env = lab_exec("cp2", "--", "sh", "-c", "echo $CLAB_LABEL_CLAB_NODE_LONGNAME")
    assert env.stdout.strip() == lab.topology.netns("cp2")


@netns_test
def test_apiserver_state_switches_through_the_cli(lab: RunningLab) -> None:
    topo = ["--topology", str(lab.topology.path)]
    runner = CliRunner()
    stopped = runner.invoke(lab_cli, ["apiserver", "cp1", "stopped", *topo])
    assert stopped.exit_code == 0, stopped.output
    wait_for(lambda: not _answers(lab.topology, "192.0.2.2"), 5.0, what="cp1 stopped listening")
    assert "apiserver: stopped" in runner.invoke(lab_cli, ["status", *topo]).output
    ready = runner.invoke(lab_cli, ["apiserver", "cp1", "ready", *topo])
    assert ready.exit_code == 0, ready.output
    wait_for(lambda: _answers(lab.topology, "192.0.2.2"), 5.0, what="cp1 listening again")
    assert curl_version(lab.topology, "192.0.2.2")["node"] == "cp1"
    # A refused apiserver is out of r1's FIB within milliseconds; the tests after this one
    # start from every node in, so wait for cp1's return (rise and min_healthy: about 2 s).
    with Fib(lab.topology.netns("r1")) as fib:
        vip4, _ = lab.topology.vips()
        fib.wait_nexthops(vip4, lambda hops: len(hops) == 3, 15.0)


def _answers(topology: Topology, address: str) -> bool:
    try:
        curl_version(topology, address, timeout=1.0)
    except AssertionError:
        return False
    return True


@netns_test
def test_status_shows_nodes_sessions_and_nexthops(lab: RunningLab) -> None:
    result = CliRunner().invoke(lab_cli, ["status", "--topology", str(lab.topology.path)])
    assert result.exit_code == 0, result.output
    for name in lab.topology.nodes:
        assert lab.topology.netns(name) in result.output
    assert result.output.count("Established") == 6
    assert result.output.count(" 3 via ") == 2
    assert "apiserver: ready" in result.output


@netns_test
def test_fib_watch_sees_a_node_leave_and_come_back(lab: RunningLab) -> None:
    # cp3's IPv4 session goes silent: r1's hold timer (3 s) drops cp3's path, then it returns.
    rule = ["OUTPUT", "-p", "tcp", "--dport", "179", "-j", "DROP"]
    iptables = ["ip", "netns", "exec", lab.topology.netns("cp3"), "iptables"]
    vip4, vip6 = lab.topology.vips()
    with Fib(lab.topology.netns("r1")) as fib:
        try:
            subprocess.run([*iptables, "-I", *rule], check=True)
            left = fib.wait_nexthops(vip4, lambda hops: len(hops) == 2, 10.0)
            assert left == CP_GATEWAYS[4] - {ip_address("192.0.2.10")}
            assert fib.nexthops(vip6) == CP_GATEWAYS[6]
        finally:
            subprocess.run([*iptables, "-D", *rule], check=True)
        assert fib.wait_nexthops(vip4, lambda hops: len(hops) == 3, 15.0) == CP_GATEWAYS[4]
        with pytest.raises(TimeoutError, match="nexthops still"):
            fib.wait_nexthops(vip4, lambda hops: len(hops) == 4, 0.05)

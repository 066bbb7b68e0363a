"""`announcer lab bench`: its parts on their own (statistics, the client against a real TLS
server, failure splitting, the baseline's configuration checked by ExaBGP itself, /proc
accounting, the report and the plots), then a smoke run end to end in its own lab
`bench-test` (root, FRR): one repetition of every scenario, announcer and the matched
baseline, with short caps. The full benchmark is not a test: `announcer lab bench`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path

import pytest
import trustme

from announcer.config import load_config
from announcer.lab import frr, netns, realiser
from announcer.lab.bench import client, command, footprint, report, scenarios, systems
from announcer.lab.bench import outcome as names
from announcer.lab.bench.client import Client, Request, classify, parse_head
from announcer.lab.bench.outcome import Outcome, percentile
from announcer.lab.bench.run import Results
from announcer.lab.bench.scenarios import Plan
from announcer.lab.bench.traffic import split_failures
from announcer.lab.cli import default_topology
from announcer.lab.topology import Topology, load_topology
from announcer.status_protocol import JSONObject

LAB_NAME = "bench-test"
DUAL_LAB_NAME = "bench-dual-test"
DUAL_TOPOLOGY = Path(__file__).resolve().parents[2] / "containerlab" / "dual-homed.clab.yml"
VIP4 = ip_network("198.51.100.10/32")
CP1_CONFIG = Path(__file__).resolve().parents[2] / "containerlab" / "cp1" / "config.yaml"


# ---- statistics -------------------------------------------------------------------------------


def test_percentiles_interpolate_and_rank_a_never_last() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert percentile([1.0, 2.0, None], 50) == 2.0
    assert percentile([1.0, 2.0, None], 99) is None  # between a time and a never
    assert percentile([None], 50) is None
    result = Outcome(samples=(0.5, None, 0.25), cap_s=30.0)
    assert result.never == 1
    assert result.stats() == {"p50_s": 0.5, "p99_s": None, "max_s": None}


# ---- the client ---------------------------------------------------------------------------------


def test_parse_head_reads_status_node_and_length() -> None:
    head = b"HTTP/1.1 503 Service Unavailable\r\nX-Lab-Node: cp2\r\nContent-Length: 12\r\n\r\n"
    assert parse_head(head) == (503, "cp2", 12)
    with pytest.raises(EOFError):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_failures_are_classified_by_cause() -> None:
    assert classify(ConnectionRefusedError()) == client.REFUSED
    assert classify(ConnectionResetError()) == client.RESET
    assert classify(ssl.SSLEOFError()) == client.RESET
    assert classify(TimeoutError()) == client.TIMEOUT
    assert classify(ssl.SSLCertVerificationError()) == client.TLS
    assert classify(OSError(errno.EHOSTUNREACH, "no route")) == client.UNREACHABLE
    assert classify(OSError(errno.EACCES, "denied")) == client.OTHER


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _serve(ca: trustme.CA) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("kubernetes").configure_cert(context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"node": "cpX"}'
        head = f"HTTP/1.1 200 OK\r\nX-Lab-Node: cpX\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


async def _run_client(context: ssl.SSLContext, port: int, seconds: float) -> list[Request]:
    load = Client("127.0.0.1", context, rate=50.0, timeout=2.0, port=port)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await load.run(stop)
    return load.records


def test_the_client_opens_a_verified_connection_per_request_at_its_rate(ca: trustme.CA) -> None:
    async def scenario() -> tuple[list[Request], list[Request], list[Request]]:
        server = await _serve(ca)
        port = server.sockets[0].getsockname()[1]
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        async with server:
            answered = await _run_client(trusted, port, 0.5)
            wrong_ca = await _run_client(ssl.create_default_context(), port, 0.1)
        refused = await _run_client(trusted, port, 0.1)  # the server is gone
        return answered, wrong_ca, refused

    answered, wrong_ca, refused = asyncio.run(scenario())
    assert 20 <= len(answered) <= 30  # 50 a second for half a second
    assert {(r.outcome, r.node, r.status) for r in answered} == {(client.OK, "cpX", 200)}
    starts = sorted(r.start for r in answered)
    assert starts[-1] - starts[0] == pytest.approx((len(starts) - 1) / 50.0, abs=0.1)
    assert all(r.start <= r.end for r in answered)
    assert {r.outcome for r in wrong_ca} == {client.TLS}
    assert {r.outcome for r in refused} == {client.REFUSED}


def test_failures_are_split_by_time_against_fib_changes() -> None:
    requests = [
        Request(9.90, 10.05, client.RESET),  # spans the change at 10.0
        Request(10.002, 10.20, client.RESET),  # started within the slack after it
        Request(11.00, 11.01, client.REFUSED),
        Request(9.00, 9.10, client.OK, "cp1", 200),
    ]
    failures = split_failures(requests, [10.0])
    assert (failures.total, failures.failed, failures.in_flight, failures.other) == (4, 3, 2, 1)
    assert failures.by_outcome == {client.REFUSED: 1, client.RESET: 2}
    assert failures.other_by_outcome == {client.REFUSED: 1}


# ---- the systems --------------------------------------------------------------------------------


def test_the_command_knows_every_system() -> None:
    assert tuple(s.name for s in systems.SYSTEMS) == command.SYSTEM_NAMES
    assert tuple(s.name for s in systems.VARIANTS) == command.VARIANT_NAMES
    assert command.DEFAULT_REPETITIONS == Plan().repetitions >= 20


def test_the_baselines_run_with_the_checkers_defaults_or_announcers() -> None:
    default, matched = systems.SYSTEMS[1:]
    plain = systems.effective_options(systems.healthcheck_args(default, [VIP4]))
    assert plain == {
        "interval": 5, "fast_interval": 1, "timeout": 5, "rise": 3, "fall": 3,
        "withdraw_on_down": True, "command": "curl -sf -k https://127.0.0.1:6443/readyz",
    }  # fmt: skip
    tuned = systems.effective_options(systems.healthcheck_args(matched, [VIP4]))
    assert (tuned["interval"], tuned["fast_interval"], tuned["rise"], tuned["fall"]) == (
        0.4, 0.4, 3, 2,
    )  # fmt: skip
    assert tuned["timeout"] == 1  # whole seconds only: curl's --max-time carries the 0.35 s
    assert "--max-time 0.35" in str(tuned["command"])


@pytest.mark.parametrize("system", systems.SYSTEMS[1:], ids=lambda s: s.name)
def test_the_rendered_baseline_is_accepted_by_exabgp(
    system: systems.System, tmp_path: Path
) -> None:
    config = load_config(CP1_CONFIG)
    text = systems.render_exabgp(system, config, [VIP4])
    assert "neighbor 192.0.2.1 {" in text and "local-address 192.0.2.2;" in text
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert '"curl -sf -k' in body and "--withdraw-on-down" in body and "$" not in body
    conf = tmp_path / "exabgp.conf"
    conf.write_text(text)
    argv = [sys.executable, "-m", "exabgp", "validate", str(conf)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_process_faults_run_side_by_side_only_when_nodes_allow() -> None:
    nodes, kinds = ["cp1", "cp2", "cp3"], ["kill", "freeze", "silent"]
    assert scenarios.rounds(nodes, kinds, 1) == [
        [("kill", "cp1"), ("freeze", "cp2"), ("silent", "cp3")]
    ]
    assert scenarios.rounds(nodes, kinds, 3) == [[(k, n) for n in nodes] for k in kinds]


# ---- /proc accounting ---------------------------------------------------------------------------


def test_a_process_tree_and_its_cost_come_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = os.getpid()
        assert footprint.tree(me, [child.pid, 1]) == frozenset({me, child.pid})
        reading = footprint.sample([me, child.pid], time.monotonic())
        assert reading.pids == frozenset({me, child.pid})
        assert reading.rss_kib > reading.pss_kib / 2 > 0
    finally:
        child.kill()
        child.wait()
    ticks = os.sysconf("SC_CLK_TCK")
    samples = [
        footprint.Sample(10.0, frozenset({1}), 2048, 1024, 0),
        footprint.Sample(20.0, frozenset({1, 2}), 4096, 2048, ticks // 2),
    ]
    usage = footprint.Usage.between(samples)
    assert usage.cpu_percent == pytest.approx(5.0, rel=0.05)  # half a second in ten
    assert (usage.rss_mib, usage.rss_mib_max, usage.processes) == (3.0, 4.0, 2)


# ---- the report and the plots -------------------------------------------------------------------


def _results() -> Results:
    results = Results(Plan.quick())
    results.settings = {
        "announcer": {"apiserver": {"interval": 0.4, "rise": 3, "min_healthy": 2.0}},
        "exabgp-healthcheck": {},
    }
    times = {"announcer": (0.6, 0.7), "exabgp-healthcheck": (4.0, None)}
    timed = (names.READYZ, names.RECOVERY, names.CRASH, names.KILL, names.FREEZE, names.SILENT)
    for name in timed:
        for system, samples in times.items():
            results.add(name, system, Outcome(samples=samples, nodes=("cp1", "cp2"), cap_s=30.0))
    for name in (names.PLANNED, names.PLANNED_0):
        for system in times:
            figures: JSONObject = {
                "failed_requests": 3, "total_requests": 900, "failed_other": 1,
                "failed_in_flight_at_fib_change": 2,
            }  # fmt: skip
            results.add(name, system, Outcome(samples=(0.4,), nodes=("cp1",), figures=figures))
    for system in times:
        footprint_figures: JSONObject = {
            "rss_mib": 60.0,
            "cpu_percent": 0.5,
            "per_node": {"cp1": {"rss_mib": 60.0}},
        }
        results.add(names.FOOTPRINT, system, Outcome(figures=footprint_figures))
    return results


def test_the_json_maps_scenario_to_system_to_figures() -> None:
    data = report.results_json(_results())
    assert list(data) == list(names.SCENARIOS)
    readyz = data[names.READYZ]
    assert isinstance(readyz, dict) and list(readyz) == ["announcer", "exabgp-healthcheck"]
    assert readyz["exabgp-healthcheck"] == {
        "samples": [4.0, None], "nodes": ["cp1", "cp2"], "p50_s": None, "p99_s": None,
        "max_s": None, "never": 1, "cap_s": 30.0, "violations": [],
    }  # fmt: skip
    planned = data[names.PLANNED]
    assert isinstance(planned, dict)
    ours = planned["announcer"]
    assert isinstance(ours, dict) and ours["total_requests"] == 900


def test_the_markdown_table_shows_nevers_and_targets() -> None:
    text = report.markdown(_results())
    assert "never (> 30 s)" in text
    assert "| readyz-failure p99 | <= 0.6 s | 0.699 s | **no** | theirs: never |" in text
    assert "| apiserver-crash p99 | <= 0.25 s | 0.699 s | **no** | theirs: never |" in text
    assert "announcer status" not in text  # not measured: no row
    assert "3 of 900 failed: 2 in flight at a FIB change, 1 other" in text


def test_every_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from announcer.lab.bench import plots

    written = plots.write_all(_results().outcomes, tmp_path)
    assert {p.name for p in written} >= {"readyz-failure.png", "footprint.png"}
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the smoke run ------------------------------------------------------------------------------


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the benchmark needs root (network namespaces, mounts)"
    missing = [
        tool for tool in ("ip", "unshare", "mount", "curl", "iptables") if not shutil.which(tool)
    ]
    missing += frr.missing_binaries()
    return f"the benchmark needs {', '.join(missing)}" if missing else None


@pytest.fixture
def bench_topology(monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    """The lab under the name `bench-test`, with nothing of it before or after the test."""
    if (reason := _unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("ANNOUNCER_LAB_NAME", LAB_NAME)
    monkeypatch.delenv("ANNOUNCER_LAB_TOPOLOGY", raising=False)
    topology = load_topology(default_topology())
    realiser.down(topology, say=lambda _: None)
    try:
        yield topology
    finally:
        realiser.down(topology, say=lambda _: None)


@pytest.fixture
def dual_topology(monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    """The dual-homed lab under the name `bench-dual-test`, nothing of it before or after."""
    if (reason := _unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("ANNOUNCER_LAB_NAME", DUAL_LAB_NAME)
    monkeypatch.delenv("ANNOUNCER_LAB_TOPOLOGY", raising=False)
    topology = load_topology(DUAL_TOPOLOGY)
    realiser.down(topology, say=lambda _: None)
    try:
        yield topology
    finally:
        realiser.down(topology, say=lambda _: None)


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_a_quick_bench_measures_every_scenario_and_leaves_nothing(
    bench_topology: Topology, tmp_path: Path
) -> None:
    argv = [
        sys.executable, "-m", "announcer", "lab", "bench", "--quick", "--seed", "1",
        "--system", "announcer", "--system", "exabgp-healthcheck-matched", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=230, check=False)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert list(data) == list(names.SCENARIOS)
    for scenario, by_system in data.items():
        assert list(by_system) == ["announcer", "exabgp-healthcheck-matched"], scenario
    ours, theirs = (data[names.KILL][s] for s in ("announcer", "exabgp-healthcheck-matched"))
    assert ours["max_s"] is not None and ours["max_s"] < 1.0  # the relay loses its daemon
    assert theirs["samples"] == [None]  # ExaBGP respawns the checker and keeps announcing
    assert data[names.FREEZE]["exabgp-healthcheck-matched"]["samples"] == [None]
    crashed = data[names.CRASH]
    assert crashed["announcer"]["max_s"] is not None and crashed["announcer"]["max_s"] < 1.0
    assert crashed["exabgp-healthcheck-matched"]["max_s"] is not None
    for scenario in (names.PLANNED, names.PLANNED_0):
        assert data[scenario]["announcer"]["total_requests"] > 300
    assert data[names.FOOTPRINT]["announcer"]["rss_mib"] > 10
    assert all(not f["violations"] for by in data.values() for f in by.values())
    assert {p.name for p in tmp_path.glob("*.png")} >= {
        "readyz-failure.png",
        "apiserver-crash.png",
        "planned-restart-timeline.png",
        "footprint.png",
    }
    run = json.loads((tmp_path / "bench-run.json").read_text())
    assert run["software"]["exabgp"] == "5.0.15" and run["machine"]["cores"] >= 1
    assert netns.list_netns(f"clab-{LAB_NAME}-") == []
    assert not bench_topology.lab_dir.exists()


@pytest.mark.netns
@pytest.mark.timeout(330)
def test_a_quick_bench_on_the_dual_homed_network_times_every_fault_by_bfd(
    dual_topology: Topology, tmp_path: Path
) -> None:
    argv = [
        sys.executable, "-m", "announcer", "lab", "bench", "--topology", str(DUAL_TOPOLOGY),
        "--quick", "--seed", "1", "--system", "announcer", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=320, check=False)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {
        names.READYZ, names.RECOVERY, names.FREEZE, names.EXABGP_FROZEN, names.UPLINK,
        names.POWER_OFF, names.LEAF, names.PLANNED,
    }  # fmt: skip
    ours = {scenario: by_system["announcer"] for scenario, by_system in data.items()}
    for scenario in (names.FREEZE, names.EXABGP_FROZEN, names.UPLINK, names.POWER_OFF):
        # BFD (or ExaBGP's liveness check), far below the leaves' 90 s hold time
        assert ours[scenario]["max_s"] is not None and ours[scenario]["max_s"] < 5.0, scenario
        assert ours[scenario]["total_requests"] > 300, scenario
    assert ours[names.UPLINK]["leaf2_lost"] == 0
    assert ours[names.LEAF]["max_s"] is not None and ours[names.LEAF]["max_s"] < 5.0
    assert all(not f["violations"] for f in ours.values())
    assert (
        "| node-power-off p99, out of both leaves | <= 1.1 s |"
        in (tmp_path / "bench.md").read_text()
    )
    assert netns.list_netns(f"clab-{DUAL_LAB_NAME}-") == []
    assert not dual_topology.lab_dir.exists()

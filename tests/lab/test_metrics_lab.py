"""The metrics endpoint of a real node (its own lab, `ops-test`): containerlab/cpN/config.yaml
set `metrics.listen: 127.0.0.1:9470`, scraped with curl inside the node's namespace and read
with prometheus-client's own parser, while the node's apiserver fails and recovers, its ExaBGP
is killed, and it is drained; each value checked against what r1 sees.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network
from pathlib import PurePosixPath

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from announcer import __version__
from announcer.lab import frr, realiser
from announcer.lab.apiserver.control import request as control_request
from announcer.lab.cli import default_topology
from announcer.lab.fib import Fib, wait_for
from announcer.lab.topology import Topology, load_topology
from announcer.status_client import query

LAB_NAME = "ops-test"
URL = "http://127.0.0.1:9470/metrics"
RUN = PurePosixPath("/run/announcer")
VIPS = ("198.51.100.10/32", "2001:db8:100::10/128")
NEIGHBORS = ("192.0.2.1", "2001:db8:1::1")
CP1 = {4: ip_address("192.0.2.2"), 6: ip_address("2001:db8:1::2")}
TIMEOUT = 20.0
Scrape = dict[str, Metric]


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, mounts)"
    missing = [tool for tool in ("ip", "unshare", "mount", "curl") if shutil.which(tool) is None]
    missing += frr.missing_binaries()
    return f"the lab needs {', '.join(missing)}" if missing else None


@pytest.fixture(scope="module")
def metrics_lab() -> Iterator[Topology]:
    """The lab `ops-test`, up and converged; removed afterwards."""
    if (reason := _unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANNOUNCER_LAB_NAME", LAB_NAME)
        patch.delenv("ANNOUNCER_LAB_TOPOLOGY", raising=False)
        topology = load_topology(default_topology())
        assert topology.name == LAB_NAME
        realiser.down(topology, say=lambda _: None)
        try:
            realiser.up(topology, say=print)
            yield topology
        finally:
            realiser.down(topology, say=print)


def scrape(topology: Topology, node: str = "cp1") -> Scrape:
    """GET /metrics with curl inside `node`'s network namespace, parsed."""
    argv = ["ip", "netns", "exec", topology.netns(node), "curl", "-sS", "--max-time", "3",
            "--fail", URL]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode == 0, result.stderr
    return {family.name: family for family in text_string_to_metric_families(result.stdout)}


def sample(found: Scrape, name: str, suffix: str = "", **labels: str) -> float:
    values = [s.value for s in found[name].samples
              if s.name == name + suffix and s.labels == labels]  # fmt: skip
    assert len(values) == 1, f"{name}{suffix}{labels}: {found[name].samples}"
    return values[0]


def announced(found: Scrape) -> dict[str, float]:
    return {s.labels["vip"]: s.value for s in found["announcer_vip_announced"].samples}


def transitions(found: Scrape, old: str, new: str) -> float:
    return sample(found, "announcer_health_transitions", "_total", **{"from": old, "to": new})


def probes(found: Scrape, result: str, reason: str) -> float:
    return sample(found, "announcer_probes", "_total", result=result, reason=reason)


def until(topology: Topology, check: Callable[[Scrape], bool], what: str) -> Scrape:
    """Scrape until `check` holds; that scrape."""
    last: list[Scrape] = []

    def holds() -> bool:
        last[:] = [scrape(topology)]
        return check(last[0])

    wait_for(holds, TIMEOUT, interval=0.1, what=what)
    return last[0]


def set_apiserver(topology: Topology, state: str) -> None:
    run_dir = topology.bind_source("cp1", RUN)
    assert run_dir is not None
    control_request(run_dir / "lab-apiserver.sock", {"op": "set", "state": state})


def cp1_in(fib: Fib) -> bool:
    """cp1 is a nexthop of both VIPs in r1's FIB."""
    return all(CP1[vip.version] in fib.nexthops(vip) for vip in map(ip_network, VIPS))


@pytest.fixture
def r1_fib(metrics_lab: Topology) -> Iterator[Fib]:
    """One netlink socket in r1 for the whole test."""
    with Fib(metrics_lab.netns("r1")) as fib:
        yield fib


def ask(topology: Topology, op: str) -> None:
    run_dir = topology.bind_source("cp1", RUN)
    assert run_dir is not None
    answer = query(run_dir / "status.sock", {"op": op}, timeout=5.0)
    assert answer["ok"] is True, answer


@pytest.mark.netns
@pytest.mark.timeout(180)
def test_a_node_metrics_follow_its_apiserver_exabgp_and_drain(
    metrics_lab: Topology, r1_fib: Fib
) -> None:
    topology = metrics_lab
    found = until(topology, lambda f: set(announced(f).values()) == {1.0}, "cp1 announcing")
    assert set(announced(found)) == set(VIPS)
    assert cp1_in(r1_fib)
    assert sample(found, "announcer_health_state", state="up") == 1.0
    assert sample(found, "announcer_drained") == 0.0
    for neighbor in NEIGHBORS:
        assert sample(found, "announcer_bgp_session_up", neighbor=neighbor) == 1.0
    build = found["announcer_build_info"].samples
    assert [(s.labels["version"], s.value) for s in build] == [(__version__, 1.0)]
    assert probes(found, "success", "ok") >= 3
    assert found["announcer_probe_duration_seconds"].type == "histogram"
    before = found

    # etcd down: /readyz 500 -> falling -> down -> withdrawn.
    start = time.monotonic()
    set_apiserver(topology, "etcd-down")
    try:
        found = until(topology, lambda f: set(announced(f).values()) == {0.0}, "withdrawn")
        withdrawn = time.monotonic() - start
        wait_for(lambda: not cp1_in(r1_fib), 5.0, what="cp1 out of r1's FIB")
        assert sample(found, "announcer_health_state", state="down") == 1.0
        assert transitions(found, "up", "falling") == transitions(before, "up", "falling") + 1
        assert transitions(found, "falling", "down") == transitions(before, "falling", "down") + 1
        assert probes(found, "failure", "not_ready") >= probes(before, "failure", "not_ready") + 2
    finally:
        set_apiserver(topology, "ready")
    found = until(topology, lambda f: set(announced(f).values()) == {1.0}, "announced again")
    assert transitions(found, "rising", "up") == transitions(before, "rising", "up") + 1
    wait_for(lambda: cp1_in(r1_fib), 5.0, what="cp1 back in r1's FIB")
    print(f"etcd-down: the metrics said withdrawn {withdrawn:.2f} s after the fault "
          "(scraped every 0.1 s); up->falling->down and rising->up counted")  # fmt: skip

    # ExaBGP killed: restarted by the daemon, counted, sessions back up.
    restarts = sample(found, "announcer_exabgp_restarts", "_total")
    run_dir = topology.bind_source("cp1", RUN)
    assert run_dir is not None
    exabgp = query(run_dir / "status.sock", {"op": "status"}, timeout=5.0)["status"]
    assert isinstance(exabgp, dict) and isinstance(exabgp["exabgp"], dict)
    pid = exabgp["exabgp"]["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    found = until(
        topology,
        lambda f: (
            sample(f, "announcer_exabgp_restarts", "_total") == restarts + 1
            and all(sample(f, "announcer_bgp_session_up", neighbor=n) == 1.0 for n in NEIGHBORS)
            and set(announced(f).values()) == {1.0}
        ),
        "exabgp restarted, sessions and routes back",
    )

    # Drained: the flag, then nothing announced; undrained: back.
    ask(topology, "drain")
    try:
        found = until(
            topology,
            lambda f: sample(f, "announcer_drained") == 1.0 and set(announced(f).values()) == {0.0},
            "drained and withdrawn",
        )
    finally:
        ask(topology, "undrain")
    found = until(
        topology,
        lambda f: sample(f, "announcer_drained") == 0.0 and set(announced(f).values()) == {1.0},
        "undrained and announcing",
    )
    wait_for(lambda: cp1_in(r1_fib), 5.0, what="cp1 back in r1's FIB")


@pytest.mark.netns
def test_the_metrics_stay_on_the_node_loopback(metrics_lab: Topology) -> None:
    # From the client, the node's uplink address has no metrics listener.
    argv = ["ip", "netns", "exec", metrics_lab.netns("client"), "curl", "-sS",
            "--max-time", "2", "http://192.0.2.2:9470/metrics"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode != 0
    assert "refused" in result.stderr.lower() or "couldn't connect" in result.stderr.lower()
    # And `announcer lab exec` reaches it from inside, as an operator would.
    exec_argv = [sys.executable, "-m", "announcer", "lab", "exec", "cp1", "--",
                 "curl", "-s", URL]  # fmt: skip
    inside = subprocess.run(exec_argv, capture_output=True, text=True, check=False, timeout=60)
    assert inside.returncode == 0, inside.stderr
    assert "announcer_build_info" in inside.stdout

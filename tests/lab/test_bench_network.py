"""The benchmark on the dual-homed network, its pure parts: which nodes each scenario faults
and when it waits for the hold time, the announcer variants' and the baseline's configuration
for the dual-homed nodes (checked by ExaBGP itself), and the report's rows and targets. The
run itself is in test_bench.py."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

import pytest
import yaml

from announcer.config import load_config
from announcer.lab.bench import network, report, systems
from announcer.lab.bench import outcome as names
from announcer.lab.bench.outcome import Outcome
from announcer.lab.bench.run import Results
from announcer.lab.bench.scenarios import Plan
from announcer.lab.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "containerlab" / "dual-homed.clab.yml"
CP1 = ROOT / "containerlab" / "dual-homed-cp1" / "config.yaml"
VIP4 = ip_network("198.51.100.10/32")
NODES = ("cp1", "cp2", "cp3")
ANNOUNCER, FAST, NO_BFD = (
    next(s for s in systems.DUAL_SYSTEMS if s.name == name)
    for name in (systems.ANNOUNCER, systems.BFD_100MS, systems.NO_BFD)
)
BASELINE = systems.SYSTEMS[1]


# ---- the schedule -------------------------------------------------------------------------------


def test_node_power_off_goes_round_the_nodes_and_the_others_once() -> None:
    power = network.schedule(NODES, names.POWER_OFF, per_node=3, rounds=3, slow=False)
    assert power == [*NODES, *NODES, *NODES]  # 9 samples, one node at a time
    cut = network.schedule(NODES, names.UPLINK, per_node=3, rounds=3, slow=False)
    assert cut == list(NODES)
    assert network.schedule(NODES, names.POWER_OFF, per_node=1, rounds=1, slow=False) == ["cp1"]


def test_a_sample_that_waits_for_the_hold_time_is_taken_once() -> None:
    assert network.schedule(NODES, names.POWER_OFF, per_node=3, rounds=3, slow=True) == ["cp1"]
    assert network.cap_of(names.POWER_OFF, Plan()) == network.HOLD_CAP >= 90
    assert network.cap_of(names.FREEZE, Plan()) == Plan().never_after


@pytest.mark.parametrize(
    ("scenario", "system", "no_bfd", "slow"),
    [
        (names.POWER_OFF, ANNOUNCER, False, False),
        (names.POWER_OFF, NO_BFD, True, True),
        (names.UPLINK, BASELINE, True, True),
        (names.EXABGP_FROZEN, NO_BFD, True, False),  # announcer's ExaBGP liveness, not BFD
        (names.EXABGP_FROZEN, BASELINE, True, True),
        (names.FREEZE, BASELINE, True, False),  # never out: capped at never_after instead
    ],
)
def test_which_scenarios_wait_for_the_hold_time(
    scenario: str, system: systems.System, no_bfd: bool, slow: bool
) -> None:
    assert network.waits_for_hold(scenario, system, no_bfd) is slow


# ---- the systems' configuration -----------------------------------------------------------------


def test_the_variants_replace_the_nodes_bfd_section_only() -> None:
    topology = load_topology(DUAL)
    own = yaml.safe_load(CP1.read_text())
    for system, bfd in ((FAST, {"enabled": True, "receive_interval": 0.1}),
                        (NO_BFD, {"enabled": False})):  # fmt: skip
        assert system.bfd is not None and system.reconfigured and system.is_announcer
        data = yaml.safe_load(systems.render_config(topology, "cp1", system.bfd))
        assert {k: v for k, v in data.items() if k != "bfd"} == {
            k: v for k, v in own.items() if k != "bfd"
        }
        assert bfd.items() <= data["bfd"].items()
    assert not ANNOUNCER.reconfigured and network.without_bfd(NO_BFD, topology, "cp1")
    assert not network.without_bfd(FAST, topology, "cp1")
    assert network.without_bfd(BASELINE, topology, "cp1")


def test_the_dual_homed_baseline_peers_with_both_leaves_over_ipv4(tmp_path: Path) -> None:
    text = systems.render_exabgp(BASELINE, load_config(CP1), [VIP4])
    assert "neighbor 192.0.2.1 {" in text and "neighbor 192.0.2.17 {" in text
    assert "local-address 192.0.2.18;" in text and "hold-time 90;" in text
    assert "2001:db8" not in text.split("process healthcheck")[1]  # IPv4 sessions only
    conf = tmp_path / "exabgp.conf"
    conf.write_text(text)
    argv = [sys.executable, "-m", "exabgp", "validate", str(conf)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- the report ---------------------------------------------------------------------------------


def _load(samples: tuple[float | None, ...], cap: float = 100.0, **extra: int) -> Outcome:
    figures = {"total_requests": 4000, "failed_requests": 12, "failed_other": 0, **extra}
    return Outcome(samples=samples, nodes=("cp1",) * len(samples), cap_s=cap, figures=figures)


def _dual_results() -> Results:
    results = Results(Plan())
    results.meta["network"] = "dual-homed"
    for system in (systems.ANNOUNCER, systems.BFD_100MS, systems.HEALTHCHECK):
        results.settings[system] = {}
    results.add(names.POWER_OFF, systems.ANNOUNCER, _load((0.61, 0.72, 0.95)))
    results.add(names.POWER_OFF, systems.BFD_100MS, _load((0.21, 0.62)))
    results.add(names.POWER_OFF, systems.HEALTHCHECK, _load((None,)))
    results.add(names.UPLINK, systems.ANNOUNCER, _load((0.7,), leaf2_lost=1))
    results.add(names.LEAF, systems.ANNOUNCER, _load((0.93,)))
    results.add(names.READYZ, systems.ANNOUNCER, _load((0.4,), cap=30.0))
    planned = {"total_requests": 900, "failed_requests": 3, "failed_other": 0}
    results.add(names.PLANNED, systems.ANNOUNCER,
                Outcome(samples=(0.3,), nodes=("cp1",), figures=planned))  # fmt: skip
    return results


def test_the_dual_rows_show_capped_samples_and_failed_requests() -> None:
    text = report.markdown(_dual_results())
    assert "| node-power-off: out of both leaves, s (p50 / p99 / max) |" in text
    assert "capped at 100 / capped at 100 / capped at 100 (n=1); 12 of 4000" in text
    assert "leaf2 lost it 1 times" in text
    assert "daemon-kill" not in text  # not run on this network: no row
    assert "| readyz-failure: out of both leaves, s (p50 / p99 / max) |" in text
    assert "r1" not in text  # the dual-homed network has no r1


def test_the_dual_targets_check_each_variant() -> None:
    rows = report.targets_table(_dual_results())
    power = next(r for r in rows if r.startswith("| node-power-off p99, out of both leaves"))
    assert "| 0.945 s | yes | theirs: never |" in power
    fast = next(r for r in rows if "100 ms x 3" in r)
    assert "| **no** |" in fast  # 0.62 s > 0.5 s
    assert any(r.startswith("| uplink-cut: times leaf2 lost the node") and "**no**" in r
               for r in rows)  # fmt: skip
    assert any(r.startswith("| leaf-failure: the spine off leaf1") and "| yes |" in r
               for r in rows)  # fmt: skip
    simple = _dual_results()
    simple.meta["network"] = "simple"
    assert not any("node-power-off" in r for r in report.targets_table(simple))

"""`announcer lab demo`: the player and the narration against a scripted lab (anywhere), then
the real demo end to end in its own lab `demo-test` (root, FRR, and nodes running announcer).

The scripted lab changes r1's view at set times after an action, on a fake clock, so the
player's timing, bounds, ordering and messages are checked exactly and without waiting.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

import pytest

from announcer.lab import demo, frr, netns, realiser
from announcer.lab.cli import default_topology
from announcer.lab.demo import Player, run_demo
from announcer.lab.narrate import Narrator
from announcer.lab.observe import ClientSample, Command, Serving, parse_curl
from announcer.lab.scenario import (
    ALL,
    Joins,
    Leaves,
    ListenerCloses,
    Missed,
    Order,
    SetApiserver,
    Step,
    Tuning,
    bootstrap,
    script,
)
from announcer.lab.topology import Topology, load_topology

VIPS = ("198.51.100.10/32", "2001:db8:100::10/128")
TUNING = Tuning(interval=0.4, timeout=0.35, rise=3, fall=2, min_healthy=2.0, drain_delay=3.0)
LAB_NAME = "demo-test"


# ---- a scripted lab on a fake clock ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


Change = tuple[float, Callable[["ScriptedLab"], None]]


class ScriptedLab:
    """A lab whose r1 view changes at given times after the matching action."""

    def __init__(self, clock: FakeClock, reactions: dict[tuple[str, str], list[Change]]) -> None:
        self.clock = clock
        self.reactions = reactions
        self.fib = set(ALL)
        self.closed: set[str] = set()
        self.failures: tuple[str, ...] = ()
        self.pending: list[tuple[float, Callable[[ScriptedLab], None]]] = []

    def _advance(self) -> None:
        due = [change for change in self.pending if change[0] <= self.clock.now]
        for change in due:
            self.pending.remove(change)
            change[1](self)

    def serving(self) -> Serving:
        self._advance()
        return Serving(dict.fromkeys(VIPS, frozenset(self.fib)))

    def announcing(self) -> frozenset[str]:
        return frozenset(self.fib)

    def listening(self, node: str) -> bool:
        self._advance()
        return node not in self.closed

    def set_apiserver(self, node: str, state: str, *, delay: float = 0.0) -> None:
        for after, change in self.reactions.get((node, state), []):
            self.pending.append((self.clock.now + after, change))

    def start(self, node: str, argv: Sequence[str]) -> Command:
        raise AssertionError("no commands in these scripts")

    def sample(self) -> ClientSample:
        answers = dict.fromkeys(sorted(self.fib), 4)
        return ClientSample(answers, self.failures)


def leave(node: str) -> Callable[[ScriptedLab], None]:
    return lambda lab: lab.fib.discard(node)


def join(node: str) -> Callable[[ScriptedLab], None]:
    return lambda lab: lab.fib.add(node)


def close(node: str) -> Callable[[ScriptedLab], None]:
    return lambda lab: lab.closed.add(node)


def play(
    steps: Sequence[Step], reactions: dict[tuple[str, str], list[Change]]
) -> tuple[str, ScriptedLab]:
    """Play `steps`; the narration (plain) and the lab. Missed propagates."""
    clock = FakeClock()
    lab = ScriptedLab(clock, reactions)
    out = io.StringIO()
    narrator = Narrator(out, tty=False, clock=clock)
    Player(lab, narrator, clock=clock, sleep=clock.sleep).play(steps)
    return out.getvalue(), lab


PLANNED = {
    ("cp1", "shutdown"): [(0.3, leave("cp1")), (3.0, close("cp1"))],
    ("cp1", "ready"): [(2.4, join("cp1"))],
}


def test_the_planned_restart_is_timed_from_the_action_and_told_in_order() -> None:
    output, _ = play(script(TUNING)[:3], PLANNED)
    assert "   + 0.00 s  cp1's apiserver began a planned shutdown\n" in output
    assert "   + 0.30 s  r1 stopped sending VIP traffic to cp1\n" in output
    assert "   + 3.00 s  cp1's apiserver closed its listener" in output
    assert "r1 stopped using cp1 2.70 s before its listener closed" in output
    assert "   r1's FIB:  cp2, cp3 (IPv4 and IPv6)\n" in output
    assert "   + 2.40 s  r1 sends VIP traffic to cp1 again\n" in output
    # Not on a terminal: a plain progress line while waiting, no spinner, no colour.
    assert "   + 2.00 s  ... r1 sends VIP traffic to cp2, cp3\n" in output
    assert "\r" not in output and "\x1b" not in output
    assert max(len(line) for line in output.splitlines()) <= 80


def test_a_node_that_never_leaves_is_a_clear_failure_at_its_bound() -> None:
    failure = script(TUNING)[3]  # cp2 etcd-down; this lab never withdraws it
    with pytest.raises(Missed) as missed:
        play([failure], {})
    assert str(missed.value) == (
        "r1 stopped sending VIP traffic to cp2: not within 3.15 s "
        "(r1 sends VIP traffic to cp1, cp2, cp3)"
    )


def test_a_listener_closing_before_the_withdrawal_breaks_the_order() -> None:
    late = {("cp1", "shutdown"): [(1.0, close("cp1")), (1.5, leave("cp1"))]}
    with pytest.raises(Missed, match=r"listener \(connections now refused\) 0\.50 s before r1"):
        play(script(TUNING)[1:2], late)


def test_announcing_sooner_than_rise_and_min_healthy_allow_is_a_failure() -> None:
    hasty = {**PLANNED, ("cp1", "ready"): [(0.5, join("cp1"))]}
    with pytest.raises(Missed, match=r"again after 0\.50 s, sooner than .* allow \(2 s\)"):
        play(script(TUNING)[1:3], hasty)


def test_failed_client_connections_and_a_wrong_fib_are_failures() -> None:
    step = Step(title="t", explain="e", serving=ALL - {"cp1"})
    with pytest.raises(Missed, match=r"should send VIP traffic to cp2, cp3, not cp1, cp2, cp3"):
        play([step], {})
    clock = FakeClock()
    lab = ScriptedLab(clock, {})
    lab.failures = ("Couldn't connect to server",)
    player = Player(lab, Narrator(io.StringIO(), tty=False), clock=clock, sleep=clock.sleep)
    with pytest.raises(Missed, match="1 of 13 client connections failed: Couldn't connect"):
        player.play([Step(title="t", explain="e", serving=ALL)])


def test_an_order_is_checked_on_the_events_of_its_step() -> None:
    leaves, closes = Leaves("cp1", 5.0), ListenerCloses("cp1", 5.0)
    step = Step(
        title="t", explain="e", serving=ALL - {"cp1"}, action=SetApiserver("cp1", "shutdown"),
        did="went", events=(closes, leaves), order=Order(leaves, closes, "gap {gap:.1f}"),
    )  # fmt: skip
    output, _ = play([step], PLANNED)
    assert "   gap 2.7\n" in output


def test_on_a_terminal_waiting_shows_a_spinner_line_that_is_cleared() -> None:
    clock = FakeClock()
    out = io.StringIO()
    narrator = Narrator(out, tty=True, clock=clock)
    narrator.waiting(1.0, Serving(dict.fromkeys(VIPS, ALL)))
    clock.sleep(0.5)
    narrator.event(1.5, "something happened")
    text = out.getvalue()
    assert text.startswith("\r   | ") and "r1 sends VIP traffic to cp1, cp2, cp3\x1b[K" in text
    assert text.endswith("\r\x1b[K   + 1.50 s  something happened\n")


def test_curl_output_is_read_per_connection() -> None:
    body = '{\n  "major": "1",\n  "node": "cp2"\n}'
    out = (
        f"{body}\n@@demo 200 0 \n"
        "\n@@demo 000 7 Failed to connect to kubernetes port 6443: Connection refused\n"
        f"{body.replace('cp2', 'cp3')}\n@@demo 200 0 \n"
        "Forbidden\n@@demo 403 0 \n"
    )
    sample = parse_curl(out)
    assert sample.answers == {"cp2": 1, "cp3": 1}
    assert sample.failures == (
        "Failed to connect to kubernetes port 6443: Connection refused",
        "HTTP 403, curl exit 0",
    )
    assert sample.total == 4


def test_the_cold_start_is_told_and_each_node_joins_when_ready() -> None:
    clock = FakeClock()
    reactions = {
        ("cp2", "ready"): [(0.2, join("cp2"))],
        ("cp1", "ready"): [(2.3, join("cp1"))],
        ("cp3", "ready"): [(2.5, join("cp3"))],
    }
    lab = ScriptedLab(clock, reactions)
    lab.fib = set()  # every apiserver stopped: nobody announces
    out = io.StringIO()
    Player(lab, Narrator(out, tty=False, clock=clock), clock=clock, sleep=clock.sleep).play(
        bootstrap(TUNING)
    )
    output = out.getvalue()
    assert "1. A brand-new cluster: kubeadm init on cp2\n" in output
    assert "   $ announcer lab apiserver cp2 starting\n" in output
    assert "   r1's FIB:  nobody (IPv4 and IPv6)\n" in output
    assert "   + 0.20 s  r1 sends VIP traffic to cp2\n" in output
    assert "   r1's FIB:  cp2 (IPv4 and IPv6)\n" in output
    assert "3. kubeadm join --control-plane on cp1 and cp3\n" in output
    assert "   + 2.50 s  r1 sends VIP traffic to cp3\n" in output
    assert "   r1's FIB:  cp1, cp2, cp3 (IPv4 and IPv6)\n" in output


def test_a_cold_start_that_announces_before_anything_is_ready_is_a_failure() -> None:
    init = bootstrap(TUNING)[0]
    with pytest.raises(Missed, match=r"should send VIP traffic to nobody, not cp1, cp2, cp3"):
        play([init], {})  # this lab's nodes announce from the start
    clock = FakeClock()
    lab = ScriptedLab(clock, {})
    lab.fib = set()
    hasty = {("cp1", "ready"): [(0.4, join("cp1"))]}  # cp2 serves: cp1 must wait
    lab.reactions = {("cp2", "ready"): [(0.2, join("cp2"))], **hasty}
    player = Player(lab, Narrator(io.StringIO(), tty=False), clock=clock, sleep=clock.sleep)
    with pytest.raises(Missed, match=r"cp1 after 0\.40 s, sooner than .* allow \(2 s\)"):
        player.play(bootstrap(TUNING))


def test_the_first_node_of_a_cold_start_joins_at_its_first_healthy_answer() -> None:
    (joins,) = bootstrap(TUNING)[1].events
    assert isinstance(joins, Joins)
    assert (joins.not_before, joins.within) == (0.0, pytest.approx(2 * 0.4 + 2.0))


def test_joins_bounds_follow_the_configuration() -> None:
    back = script(TUNING)[2]
    (joins,) = back.events
    assert isinstance(joins, Joins)
    assert joins.not_before == 2.0  # max((rise - 1) x interval, min_healthy)
    assert joins.within == pytest.approx(2.0 + 2 * 0.4 + 2.0)
    slow = Tuning(interval=1.0, timeout=0.5, rise=4, fall=2, min_healthy=0.0, drain_delay=3.0)
    (joins,) = script(slow)[2].events
    assert isinstance(joins, Joins)
    assert (joins.not_before, joins.within) == (3.0, 3.0 + 2.0 + 2.0)


# ---- the real demo, in its own lab ------------------------------------------------------------


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, mounts)"
    missing = [tool for tool in ("ip", "unshare", "mount", "curl") if shutil.which(tool) is None]
    missing += frr.missing_binaries()
    return f"the lab needs {', '.join(missing)}" if missing else None


@pytest.fixture
def demo_topology(monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    """The lab under the name `demo-test`, with nothing of it before or after the test."""
    if (reason := _unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("ANNOUNCER_LAB_NAME", LAB_NAME)
    monkeypatch.delenv("ANNOUNCER_LAB_TOPOLOGY", raising=False)
    topology = load_topology(default_topology())
    assert topology.name == LAB_NAME
    no_daemon = [n for n in sorted(ALL) if not (topology.path.parent / n / "config.yaml").exists()]
    if no_daemon:
        pytest.skip(f"{', '.join(no_daemon)} run no announcer daemon (no containerlab/<node>/"
                    "config.yaml): the demo's withdrawals cannot happen")  # fmt: skip
    realiser.down(topology, say=lambda _: None)
    try:
        yield topology
    finally:
        realiser.down(topology, say=lambda _: None)


def _nothing_left(topology: Topology) -> None:
    assert netns.list_netns(f"clab-{LAB_NAME}-") == []
    assert not topology.lab_dir.exists()


@pytest.mark.netns
def test_the_demo_runs_end_to_end_and_leaves_nothing_behind(demo_topology: Topology) -> None:
    argv = [sys.executable, "-m", "announcer", "lab", "demo"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    output = result.stdout
    print(output, result.stderr)
    assert result.returncode == 0, output[-2000:] + result.stderr
    flowing = " ".join(output.split())
    for expected in [
        "as a brand-new cluster",
        "and no route to the VIPs: no node announces them.",
        "1. A brand-new cluster: kubeadm init on cp2",
        "r1's FIB: nobody (IPv4 and IPv6)",
        "12 new connections, none answered",
        "r1 sends VIP traffic to cp2 r1's FIB: cp2 (IPv4 and IPv6)",
        "12 new connections, all answered: 12 by cp2",
        "kubeadm join --control-plane on cp1 and cp3",
        "r1's FIB: cp1, cp2, cp3 (IPv4 and IPv6)",
        "cp1's apiserver began a planned shutdown",
        "r1 stopped sending VIP traffic to cp1",
        "cp1's apiserver closed its listener",
        "s before its listener closed: no new connection met a closed port.",
        "r1's FIB: cp2, cp3 (IPv4 and IPv6)",
        "r1 sends VIP traffic to cp1 again",
        "r1 stopped sending VIP traffic to cp2",
        "cp3 withdrew its route",
        "`announcer drain --wait` returned",
        "r1 sends VIP traffic to cp3 again",
        "12 new connections, all answered",
        "All 10 steps behaved as announcer promises",
        f"lab {LAB_NAME} removed in",
    ]:
        assert expected in flowing  # phrases, whatever the line wrapping
    assert re.search(r"\+ 0\.\d\d s  r1 stopped sending VIP traffic to cp1\n", output)
    assert "\x1b" not in output and "\r" not in output
    assert max(len(line) for line in output.splitlines()) <= 80
    _nothing_left(demo_topology)


@pytest.mark.netns
def test_a_missed_expectation_exits_1_and_still_tears_down(
    demo_topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `slow` with no delay is a healthy apiserver: announcer rightly keeps announcing cp1.
    impossible = Step(
        title="cp1 should leave but has no reason to", explain="-", serving=ALL - {"cp1"},
        action=SetApiserver("cp1", "slow"), did="cp1 went slow", events=(Leaves("cp1", 1.0),),
    )  # fmt: skip
    monkeypatch.setattr(demo, "demo_script", lambda tuning: (impossible,))
    out = io.StringIO()
    assert run_demo(demo_topology, Narrator(out, tty=False)) == 1
    text = out.getvalue()
    assert "FAILED: r1 stopped sending VIP traffic to cp1: not within 1.00 s" in text
    assert f"lab {LAB_NAME} removed in" in text
    _nothing_left(demo_topology)


@pytest.mark.netns
def test_the_demo_leaves_an_existing_lab_of_its_name_alone(demo_topology: Topology) -> None:
    name = demo_topology.netns("cp2")
    netns.add_netns(name)
    out = io.StringIO()
    assert run_demo(demo_topology, Narrator(out, tty=False)) == 1
    assert f"lab {LAB_NAME} is already there (namespace {name})" in out.getvalue()
    assert netns.list_netns(name) == [name]
    assert "Bringing the lab up" not in out.getvalue()


def test_demo_is_a_lab_command() -> None:
    from announcer.lab.cli import lab

    assert "demo" in lab.commands

"""`announcer lab demo`: bring the lab up as a brand-new cluster (every apiserver stopped), play
the script (`scenario.bootstrap`: kubeadm init and join through the VIP; `scenario.script`: a
planned restart, a failure, a drain; each timed as r1's FIB and the client see it), then tear
the lab down, always: also after a failed expectation, an error, Ctrl-C or SIGTERM.

Exit 0 when every expectation held, 1 when one did not or the lab failed, 130 when
interrupted: the demo doubles as an end-to-end check. It leaves alone a lab of the same name
that is already there (it would have to tear it down at the end).
Owns that sequence and `Player`, which runs the steps (act, watch every TICK until each event
happened or is overdue, check who serves). The script is `scenario`'s, the words `narrate`'s,
the looking `observe`'s, building and removing the lab the realiser's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType

import click

from announcer.config import ConfigError, load_config
from announcer.lab import realiser
from announcer.lab.cli import default_topology, lab, topology_option
from announcer.lab.narrate import Narrator, node_list
from announcer.lab.netns import LabError
from announcer.lab.observe import CLIENT, ClientSample, Command, LiveLab, Serving
from announcer.lab.scenario import (
    ALL,
    Event,
    Joins,
    Lab,
    Look,
    Missed,
    Order,
    Step,
    Tuning,
    bootstrap,
)
from announcer.lab.scenario import script as demo_script
from announcer.lab.topology import Topology, TopologyError, load_topology

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
TICK = 0.01  # seconds between looks at the lab while waiting for an event
ROUTER = "r1"
_CONFIG = PurePosixPath("/etc/announcer/config.yaml")


class Interrupted(Exception):
    """SIGTERM arrived: stop the demo (and tear the lab down)."""


# ---- the command ----------------------------------------------------------------------------


@lab.command()
@topology_option
@click.option("--keep", is_flag=True, help="Leave the lab up at the end, to look around.")
@click.pass_context
def demo(ctx: click.Context, topology_path: Path | None, keep: bool) -> None:
    """Watch announcer at work in the lab, narrated (about a minute; needs root).

    Brings the lab up as a brand-new cluster with no apiserver running, bootstraps it through
    the VIP (kubeadm init on cp2, then cp1 and cp3 join), takes cp1's apiserver through a
    planned restart and cp2's through a failure, drains and undrains cp3, and shows at each
    step which nodes r1 sends the VIP's traffic to and which nodes answer new connections from
    the client. Tears the lab down at the end. Exits 1 if anything did not behave as
    announcer promises."""
    try:
        topology = load_topology(topology_path or default_topology())
    except TopologyError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.exit(run_demo(topology, Narrator(), keep=keep))


def run_demo(topology: Topology, narrator: Narrator, *, keep: bool = False) -> int:
    """The whole demo; its exit status."""
    try:
        check_cast(topology)
        settings = tuning(topology)
        steps = (*bootstrap(settings), *demo_script(settings))
    except LabError as exc:
        narrator.failed(str(exc))
        return EXIT_FAILED
    start = time.monotonic()
    with _sigterm_interrupts():
        try:
            _bring_up(topology, narrator)
            with LiveLab(topology) as live:
                Player(live, narrator).play(steps)
            narrator.passed(len(steps), time.monotonic() - start)
            return 0
        except (Missed, LabError) as exc:
            narrator.failed(str(exc))
            return EXIT_FAILED
        except (KeyboardInterrupt, Interrupted):
            narrator.failed("interrupted")
            return EXIT_INTERRUPTED
        finally:
            _finish(topology, narrator, keep=keep)


def check_cast(topology: Topology) -> None:
    """The lab has the nodes the script names, and nothing of it is up yet."""
    cast = {realiser.ROUTER: {ROUTER}, realiser.CONTROL_PLANE: set(ALL), "client": {CLIENT}}
    for role, names in cast.items():
        if missing := names - set(realiser.nodes_with_role(topology, role)):
            raise LabError(f"{topology.path}: the demo needs {role} nodes {sorted(missing)}")
    if found := realiser.leftovers(topology):
        raise LabError(
            f"lab {topology.name} is already there ({'; '.join(found)}). The demo brings up "
            "its own lab and removes it at the end, so it leaves this one alone: "
            "`announcer lab down` first, or set ANNOUNCER_LAB_NAME to another lab name."
        )


def tuning(topology: Topology) -> Tuning:
    """The announcer settings of the control-plane nodes (the demo's bounds follow them)."""
    found = set()
    for node in sorted(ALL):
        path = topology.bind_source(node, _CONFIG)
        if path is None or not path.is_file():
            raise LabError(f"{node} runs no announcer daemon: no {path or _CONFIG}")
        try:
            config = load_config(path)
        except ConfigError as exc:
            raise LabError(f"{node}: {path}: {exc}") from exc
        probe, drain = config.apiserver, config.drain
        found.add(Tuning(interval=probe.interval, timeout=probe.timeout, rise=probe.rise,
                         fall=probe.fall, min_healthy=probe.min_healthy,
                         drain_delay=drain.delay))  # fmt: skip
    # One set of bounds for every node keeps the story simple; take the most lenient.
    return max(found, key=lambda t: (t.fall * t.interval + t.timeout, t.min_healthy))


def _bring_up(topology: Topology, narrator: Narrator) -> None:
    vips = [str(vip) for vip in topology.vips()]
    narrator.intro(router=ROUTER, nodes=sorted(ALL), client=CLIENT, vips=vips)
    narrator.line(
        f"Bringing the lab up (lab name {topology.name}) as a brand-new cluster: announcer "
        "runs on every node, no apiserver does yet ..."
    )
    took = realiser.up(topology, say=narrator.lab_progress, apiserver_state="stopped")
    narrator.lab_done(
        f"up in {took:.1f} s: {ROUTER} has BGP sessions with {node_list(ALL)} over IPv4 and "
        "IPv6, and no route to the VIPs: no node announces them."
    )


def _finish(topology: Topology, narrator: Narrator, *, keep: bool) -> None:
    narrator.line()
    if keep:
        narrator.line(
            f"The lab is left up: `announcer lab status`, logs under {topology.lab_dir}/*/log/; "
            f"remove it with `ANNOUNCER_LAB_NAME={topology.name} announcer lab down`."
        )
        return
    with _signals_ignored():  # a second Ctrl-C must not leave half a lab behind
        narrator.line("Tearing the lab down (run the demo with --keep to look around first) ...")
        took = realiser.down(topology, say=narrator.lab_progress)
    narrator.lab_done(f"lab {topology.name} removed in {took:.1f} s.")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    owner = os.getpid()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a fork (pyroute2 forks to enter namespaces): die plainly
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise Interrupted

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---- playing the steps ----------------------------------------------------------------------


@dataclass
class Player:
    """Runs steps against a lab, timing every event from its step's action."""

    lab: Lab
    narrator: Narrator
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    times: dict[Event, float] = field(default_factory=dict)

    def play(self, steps: Sequence[Step]) -> None:
        for number, step in enumerate(steps, 1):
            command = step.action.command if step.action else None
            self.narrator.step(number, title=step.title, command=command, explain=step.explain)
            self.act(step)
            self.check(step)

    def act(self, step: Step) -> None:
        if step.action is None:
            return
        start = self.clock()
        command = step.action.start(self.lab)
        try:
            self.narrator.action(step.did)
            self.watch(step.events, command, start)
        finally:
            if command is not None:
                command.close()
        if step.order is not None:
            self.check_order(step.order)

    def watch(self, events: Sequence[Event], command: Command | None, start: float) -> None:
        """Look every TICK until every event happened; Missed when one is overdue."""
        pending = list(events)
        while pending:
            look = Look(self.lab, self.lab.serving(), command)
            for event in list(pending):
                if event.happened(look):
                    self.happened(event, self.clock() - start)
                    pending.remove(event)
                elif self.clock() - start > event.within:
                    raise Missed(_overdue(event, look.serving))
            if pending:
                self.narrator.waiting(self.clock() - start, look.serving)
                self.sleep(TICK)

    def happened(self, event: Event, elapsed: float) -> None:
        self.times[event] = elapsed
        self.narrator.event(elapsed, event.text)
        if isinstance(event, Joins) and elapsed < event.not_before:
            raise Missed(f"{event.text} after {elapsed:.2f} s, sooner than announcer's rise "
                         f"and min_healthy allow ({event.not_before:g} s)")  # fmt: skip

    def check_order(self, order: Order) -> None:
        gap = self.times[order.then] - self.times[order.first]
        if gap <= 0:
            raise Missed(f"{order.then.text} {-gap:.2f} s before {order.first.text}")
        self.narrator.conclusion(order.says.format(gap=gap))

    def check(self, step: Step) -> None:
        """Who serves now, as r1's FIB and a client sample see it, against the step's cast."""
        serving = self.lab.serving()
        sample = self.lab.sample()
        self.narrator.sees(serving, sample)
        if problem := _wrong_nodes(step, serving, sample):
            raise Missed(problem)


def _overdue(event: Event, serving: Serving) -> str:
    now = node_list(serving.nodes)
    return f"{event.text}: not within {event.within:.2f} s ({ROUTER} sends VIP traffic to {now})"


def _wrong_nodes(step: Step, serving: Serving, sample: ClientSample) -> str | None:
    expected = node_list(step.serving)
    if not serving.uniform() or serving.nodes != step.serving:
        return f"{ROUTER} should send VIP traffic to {expected}, not {node_list(serving.nodes)}"
    if not step.serving:  # no route to the VIPs: every connection must fail
        if sample.answers:
            return f"{node_list(sample.answers)} answered the client, but {ROUTER} has no route"
        return None
    if sample.failures:
        failed = f"{len(sample.failures)} of {sample.total}"
        return f"{failed} client connections failed: {sample.failures[0]}"
    if strays := set(sample.answers) - step.serving:
        return f"{node_list(strays)} answered the client, but {ROUTER} routes to {expected}"
    if step.spread and len(sample.answers) < 2:
        return f"only {node_list(sample.answers)} answered {sample.total} connections: no ECMP"
    return None

"""The demo's script, as data: what to do, what must follow, within which bounds.

`bootstrap(tuning)` returns the cold start's `Step`s (a lab whose apiservers are all stopped
is bootstrapped through the VIP, as `kubeadm init` and `join` do), `script(tuning)` the rest.
Each step says what to do (`action`), which events must follow and within which bound from
the action (`events`, optionally in an `order`), and which nodes must serve the VIPs
afterwards (`serving`, checked in r1's FIB and by a client sample). The bounds come from the
nodes' announcer settings (`Tuning`), as the configuration states them, plus `MARGIN` for
BGP and the router's FIB. An event checks itself against a `Look` at the
lab; a command that fails raises `Missed`.

It must not print or wait: the demo's player runs the steps, the narrator tells them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from announcer.lab.observe import ClientSample, Command, Serving

ALL = frozenset({"cp1", "cp2", "cp3"})
SHUTDOWN_DELAY = 3.0  # the fake apiserver's --shutdown-delay-duration in the planned restart
MARGIN = 2.0  # seconds allowed on top of announcer's own bounds: BGP update, r1's FIB, load
STARTUP = 3.0  # seconds for a command in a node to start: the namespace launcher, the CLI


class Missed(Exception):
    """Something the demo expects did not happen (in time); the message says what."""


class Lab(Protocol):
    """What the demo needs from a running lab (`observe.LiveLab`)."""

    def serving(self) -> Serving: ...
    def announcing(self) -> frozenset[str]: ...
    def listening(self, node: str) -> bool: ...
    def set_apiserver(self, node: str, state: str, *, delay: float = 0.0) -> None: ...
    def start(self, node: str, argv: Sequence[str]) -> Command: ...
    def sample(self) -> ClientSample: ...


@dataclass(frozen=True)
class Tuning:
    """The announcer settings the bounds follow from (`apiserver.*`, `drain.*`)."""

    interval: float
    timeout: float
    rise: int
    fall: int
    min_healthy: float
    drain_delay: float


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetApiserver:
    node: str
    state: str
    delay: float = 0.0

    @property
    def command(self) -> str:
        delay = f" --delay {self.delay:g}" if self.delay else ""
        return f"announcer lab apiserver {self.node} {self.state}{delay}"

    def start(self, lab: Lab) -> Command | None:
        lab.set_apiserver(self.node, self.state, delay=self.delay)
        return None


@dataclass(frozen=True)
class SetApiservers:
    """The same state for several nodes' apiservers, one after the other."""

    nodes: tuple[str, ...]
    state: str

    @property
    def command(self) -> str:
        return "; ".join(SetApiserver(node, self.state).command for node in self.nodes)

    def start(self, lab: Lab) -> Command | None:
        for node in self.nodes:
            lab.set_apiserver(node, self.state)
        return None


@dataclass(frozen=True)
class RunInNode:
    node: str
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        return f"announcer lab exec {self.node} -- {' '.join(self.argv)}"

    def start(self, lab: Lab) -> Command | None:
        return lab.start(self.node, self.argv)


Action = SetApiserver | SetApiservers | RunInNode


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """One look at the lab while waiting: r1's FIB now, and the command the action started."""

    lab: Lab
    serving: Serving
    command: Command | None


@dataclass(frozen=True)
class Leaves:
    node: str
    within: float

    @property
    def text(self) -> str:
        return f"r1 stopped sending VIP traffic to {self.node}"

    def happened(self, look: Look) -> bool:
        return look.serving.nowhere(self.node)


@dataclass(frozen=True)
class Joins:
    node: str
    within: float
    not_before: float = 0.0  # announcing sooner would break announcer's rise/min_healthy
    again: bool = True  # False: the node's first time in the set (a cold start)

    @property
    def text(self) -> str:
        return f"r1 sends VIP traffic to {self.node}" + (" again" if self.again else "")

    def happened(self, look: Look) -> bool:
        return look.serving.everywhere(self.node)


@dataclass(frozen=True)
class Withdraws:
    node: str
    within: float

    @property
    def text(self) -> str:
        return f"{self.node} withdrew its route: r1 has none from it any more"

    def happened(self, look: Look) -> bool:
        return self.node not in look.lab.announcing()


@dataclass(frozen=True)
class ListenerCloses:
    node: str
    within: float

    @property
    def text(self) -> str:
        return f"{self.node}'s apiserver closed its listener (connections now refused)"

    def happened(self, look: Look) -> bool:
        return not look.lab.listening(self.node)


@dataclass(frozen=True)
class CommandSucceeds:
    within: float
    text: str = "the command returned"

    def happened(self, look: Look) -> bool:
        if look.command is None or (code := look.command.exit_code()) is None:
            return False
        if code != 0:
            output = look.command.output() or "no output"
            raise Missed(f"the command failed (exit {code}): {output}")
        return True


Event = Leaves | Joins | Withdraws | ListenerCloses | CommandSucceeds


@dataclass(frozen=True)
class Order:
    """`first` must happen before `then`; `says` is told with the gap between them ({gap})."""

    first: Event
    then: Event
    says: str


@dataclass(frozen=True)
class Step:
    title: str
    explain: str
    serving: frozenset[str]
    action: Action | None = None
    did: str = ""  # the action, told in the past tense at +0.00 s
    events: tuple[Event, ...] = ()
    order: Order | None = None
    spread: bool = False  # the client must see at least two nodes answer


# ---- the script ---------------------------------------------------------------------------


def bootstrap(tuning: Tuning, first: str = "cp2") -> tuple[Step, ...]:
    """A brand-new cluster (every apiserver stopped): `first` runs kubeadm init, the others
    join; each node announces the VIP only once its own apiserver is ready."""
    others = tuple(sorted(ALL - {first}))
    init = Step(
        title=f"A brand-new cluster: kubeadm init on {first}",
        explain="No apiserver runs yet, so no node announces the VIP and nothing answers "
        f"there. kubeadm init starts {first}'s apiserver, which answers /readyz with 500 "
        "until its post-start hooks are done: announcer keeps waiting.",
        serving=frozenset(),
        action=SetApiserver(first, "starting"),
        did=f"{first}'s apiserver started (not ready yet)",
    )
    ready = Step(
        title=f"{first}'s apiserver is ready",
        explain=f"Nobody serves the VIP yet, so announcer on {first} announces it at the "
        "first healthy answer (any healthy apiserver beats none; the nodes that join later "
        f"wait {tuning.rise} good probes and {tuning.min_healthy:g} s of health). From then "
        "on kubeadm, the kubelets and everyone else reach the cluster through the VIP, which "
        "this node alone serves.",
        serving=frozenset({first}),
        action=SetApiserver(first, "ready"),
        did=f"{first}'s apiserver answered /readyz with 200",
        events=(_first_joins(first, tuning),),
    )
    join = Step(
        title=f"kubeadm join --control-plane on {_names(others)}",
        explain="Their apiservers start and become ready; each node joins the set that r1 "
        f"spreads the VIP over once its own apiserver is ready, while {first} serves on.",
        serving=ALL,
        action=SetApiservers(others, "ready"),
        did=f"the apiservers of {_names(others)} are ready",
        events=tuple(_joins(node, tuning, again=False) for node in others),
    )
    return init, ready, join


def _names(nodes: Sequence[str]) -> str:
    return " and ".join(nodes)


def _first_joins(node: str, tuning: Tuning) -> Joins:
    # Nobody serves: the first good probe (at most an interval after the action) and the
    # served check (under an interval) announce.
    return Joins(node, 2 * tuning.interval + MARGIN, not_before=0.0, again=False)


def _joins(node: str, tuning: Tuning, *, again: bool = True) -> Joins:
    # The streak starts with the first good probe, at the earliest right after the action;
    # it ends on a probe tick, at most an interval after both conditions hold.
    ready_for = max((tuning.rise - 1) * tuning.interval, tuning.min_healthy)
    within = ready_for + 2 * tuning.interval + MARGIN
    return Joins(node, within, not_before=ready_for, again=again)


def script(tuning: Tuning) -> tuple[Step, ...]:
    return (
        Step(
            title="Three ready apiservers",
            explain="Every apiserver answers /readyz with 200, so every node announces the "
            "VIP and r1 spreads new connections over all three.",
            serving=ALL,
            spread=True,
        ),
        *_planned_restart("cp1", tuning),
        *_failure("cp2", tuning),
        *_drain("cp3", tuning),
    )


def _back(node: str, tuning: Tuning, *, title: str, did: str) -> Step:
    return Step(
        title=title,
        explain=f"announcer announces again after {tuning.rise} good probes in a row and "
        f"{tuning.min_healthy:g} s of health (rise, min_healthy), so a flapping apiserver "
        "does not attract traffic.",
        serving=ALL,
        action=SetApiserver(node, "ready"),
        did=did,
        events=(_joins(node, tuning),),
    )


def _planned_restart(node: str, tuning: Tuning) -> tuple[Step, ...]:
    leaves = Leaves(node, SHUTDOWN_DELAY)
    closes = ListenerCloses(node, SHUTDOWN_DELAY + MARGIN)
    says = (
        f"r1 stopped using {node} {{gap:.2f}} s before its listener closed: no new "
        "connection met a closed port."
    )
    shutdown = Step(
        title=f"A planned restart of {node}'s apiserver",
        explain="As when kubelet stops the apiserver's static pod: /readyz fails at once, "
        f"the apiserver keeps serving for {SHUTDOWN_DELAY:g} s (--shutdown-delay-duration), "
        "then closes its listener. announcer sees /readyz fail while /livez still answers, "
        "and withdraws at once, without waiting for more failed probes.",
        serving=ALL - {node},
        action=SetApiserver(node, "shutdown", delay=SHUTDOWN_DELAY),
        did=f"{node}'s apiserver began a planned shutdown",
        events=(leaves, closes),
        order=Order(leaves, closes, says),
    )
    back = _back(node, tuning, title=f"{node}'s apiserver is back",
                 did=f"{node}'s apiserver started and is ready")  # fmt: skip
    return shutdown, back


def _failure(node: str, tuning: Tuning) -> tuple[Step, ...]:
    stated = tuning.fall * tuning.interval + tuning.timeout
    fails = Step(
        title=f"{node}'s apiserver fails",
        explain=f"{node}'s apiserver loses etcd: it still runs and accepts connections, but "
        f"/readyz answers 500. announcer probes every {tuning.interval:g} s and withdraws "
        f"after {tuning.fall} failures in a row (fall): within about {stated:.2f} s.",
        serving=ALL - {node},
        action=SetApiserver(node, "etcd-down"),
        did=f"{node}'s apiserver lost etcd",
        events=(Leaves(node, stated + MARGIN),),
    )
    back = _back(node, tuning, title=f"{node} recovers", did=f"{node}'s etcd is back")
    return fails, back


def _drain(node: str, tuning: Tuning) -> tuple[Step, ...]:
    # Bounds count from the command's start, so they include STARTUP.
    leaves = Leaves(node, STARTUP + tuning.interval + MARGIN)
    withdraws = Withdraws(node, STARTUP + tuning.drain_delay + MARGIN)
    says = (
        f"r1 moved VIP traffic off {node} {{gap:.2f}} s before {node} withdrew its route; "
        "in between, the route stayed as a backup, so the VIP never lacked a route while "
        "traffic moved."
    )
    drain = Step(
        title=f"{node} is drained for maintenance",
        explain=f"Its apiserver is fine, but an operator takes {node} out. announcer first "
        "announces the route with the graceful-shutdown community, which makes r1 prefer "
        f"the other nodes, and withdraws it {tuning.drain_delay:g} s later; --wait returns "
        "then. The drain survives a reboot until undrained.",
        serving=ALL - {node},
        action=RunInNode(node, ("announcer", "drain", "--wait")),
        did=f"announcer on {node} was asked to drain",
        events=(leaves, withdraws, CommandSucceeds(withdraws.within + MARGIN,
                                                    "`announcer drain --wait` returned")),
        order=Order(leaves, withdraws, says),
    )  # fmt: skip
    return drain, _undrain(node, tuning)


def _undrain(node: str, tuning: Tuning) -> Step:
    return Step(
        title=f"{node} is undrained",
        explain=f"Back in service: announcer announces again, as {node}'s apiserver is ready.",
        serving=ALL,
        action=RunInNode(node, ("announcer", "undrain")),
        did=f"announcer on {node} was asked to undrain",
        events=(CommandSucceeds(STARTUP + MARGIN, "`announcer undrain` returned"),
                Joins(node, STARTUP + tuning.interval + MARGIN)),
        spread=True,
    )  # fmt: skip

"""A simulated world around the pure core: ExaBGP's RIB, the interface, the clients.

It feeds events to `announcer.core.step`, carries out the effects the way the daemon's shell
would (a command waits for its answer, a VIP operation for its observation, a kill for the
exit) and keeps the truth the core can only infer: what ExaBGP really announces (`rib`) and
what is really on the interface (`lo`). Table tests and the stateful property test use it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from announcer.config import parse_config
from announcer.config.model import Config, VipNetwork
from announcer.core import CoreState, initial, step
from announcer.core import events as ev
from announcer.core.effects import (
    Action,
    AddVip,
    Beat,
    CheckServed,
    Effect,
    Exit,
    KillExabgp,
    RemoveVip,
    Reply,
    RestartExabgp,
    Send,
    StartProbe,
    StopExabgp,
)
from announcer.health import ProbeResult
from announcer.routes import Route, RouteKey

DOCUMENT: dict[str, object] = {
    "apiserver": {"interval": 1.0, "timeout": 0.5, "rise": 2, "fall": 2, "min_healthy": 0},
    "vips": ["198.51.100.10/32", "2001:db8::10/128"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [
            {
                "address": "192.0.2.1",
                "peer_as": 65000,
                "families": ["ipv4", "ipv6"],
                "next_hop_ipv6": "2001:db8::2",
            },
        ],
    },
    "drain": {"delay": 3.0, "withdraw_wait": 1.0},
}


def config(**drain: float) -> Config:
    document = dict(DOCUMENT)
    document["drain"] = {**DOCUMENT["drain"], **drain}  # type: ignore[dict-item]
    return parse_config(document)


def ok(at: float) -> ProbeResult:
    return ProbeResult(ok=True, status=200, reason="ok", latency=0.01, at=at)


def failed(at: float) -> ProbeResult:
    return ProbeResult(ok=False, status=500, reason="http 500", latency=0.01, at=at)


@dataclasses.dataclass
class World:
    """The core plus the truth around it; `now` advances only through `tick`."""

    cfg: Config = dataclasses.field(default_factory=config)
    drained: bool = False
    now: float = 0.0
    # The answer to a served check, given right after the probe; None: left unanswered.
    # Served by default: the usual rise and min_healthy apply.
    served: bool | None = True

    def __post_init__(self) -> None:
        self.state: CoreState = initial(self.cfg, drained=self.drained, now=self.now)
        self.rib: dict[RouteKey, Route] = {}
        self.lo: set[VipNetwork] = set()
        self.alive = False  # ExaBGP running
        self.relay = False  # a relay connected
        self.dying = False  # kill/stop/restart asked, exit not yet seen
        self.restart = False
        self.pending: Send | None = None  # a command ExaBGP has not answered
        self.vip_news: list[ev.VipObserved] = []  # observations the shell will report
        self.probing = False
        self.served_checks: list[CheckServed] = []
        self.beats = 0
        self.replies: dict[int, list[Reply]] = defaultdict(list)
        self.exited = False
        self.effects: list[Effect] = []  # of the last step
        self.log: list[Effect] = []  # every effect so far
        self.sent: list[Send] = []
        self.kills = 0

    # -- feeding the core

    def feed(self, event: ev.Event) -> list[Effect]:
        self.state, self.effects = step(self.state, event, self.now)
        self.log.extend(self.effects)
        for effect in self.effects:
            self._carry_out(effect)
        return self.effects

    def tick(self, dt: float = 0.0) -> list[Effect]:
        self.now += dt
        return self.feed(ev.Tick())

    def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Send):
            assert self.pending is None, "two commands in flight"
            assert self.relay, "a command without a relay"
            self.pending = effect
            self.sent.append(effect)
        elif isinstance(effect, AddVip):
            self.lo.add(effect.vip)
            self.vip_news.append(ev.VipObserved(effect.vip, True))
        elif isinstance(effect, RemoveVip):
            self.lo.discard(effect.vip)
            self.vip_news.append(ev.VipObserved(effect.vip, False))
        elif isinstance(effect, (KillExabgp, StopExabgp, RestartExabgp)):
            self.kills += isinstance(effect, KillExabgp)
            self.restart = isinstance(effect, RestartExabgp)
            self.dying = self.alive
            self.pending = None if self.dying else self.pending
        elif isinstance(effect, StartProbe):
            self.probing = True
        elif isinstance(effect, CheckServed):
            self.served_checks.append(effect)
        elif isinstance(effect, Beat):
            self.beats += 1
        elif isinstance(effect, Reply):
            self.replies[effect.client].append(effect)
        elif isinstance(effect, Exit):
            self.exited = True

    # -- the world's moves

    def start_exabgp(self) -> None:
        """ExaBGP starts (or restarts) and its relay connects."""
        assert not self.alive
        self.alive, self.relay, self.dying = True, True, False
        self.feed(ev.ExabgpConnected())

    def exabgp_exits(self) -> None:
        assert self.alive
        self.alive, self.relay, self.dying, self.pending = False, False, False, None
        self.rib.clear()
        self.feed(ev.ExabgpExited())

    def relay_drops(self, *, applied: bool = False) -> None:
        """The relay's connection goes; ExaBGP keeps running (and keeps its routes)."""
        assert self.relay
        self._maybe_applied(applied)
        self.relay = False
        self.feed(ev.ExabgpDisconnected())

    def relay_back(self) -> None:
        assert self.alive and not self.relay and not self.dying
        self.relay = True
        self.feed(ev.ExabgpConnected())

    def answer(self, outcome: str = "done", *, applied: bool = False) -> None:
        """ExaBGP answers the pending command: "done", "error", or lost ("timeout")."""
        send = self.pending
        assert send is not None
        if outcome == "done":
            self._apply(send)
        elif outcome != "error":
            self._maybe_applied(applied)
            self.relay = False  # the channel closes itself after a lost ack
        self.pending = None
        if outcome == "done":
            self.feed(ev.CommandDone(send.generation))
        elif outcome == "error":
            self.feed(ev.CommandError(send.generation))
        else:
            self.feed(ev.CommandLost(send.generation, outcome))

    def observe_vip(self) -> None:
        self.feed(self.vip_news.pop(0))

    def probe(self, good: bool) -> None:
        assert self.probing
        self.probing = False
        at = self.now
        checks = len(self.served_checks)
        self.feed(ev.ProbeDone(ok(at) if good else failed(at)))
        if len(self.served_checks) > checks and self.served is not None:
            self.answer_served(self.served)

    def answer_served(self, served: bool) -> None:
        self.feed(ev.ServedAnswered(served, "accepted" if served else "timeout"))

    def _apply(self, send: Send) -> None:
        if send.action is Action.ANNOUNCE:
            self.rib[send.route.key] = send.route
        else:
            self.rib.pop(send.route.key, None)

    def _maybe_applied(self, applied: bool) -> None:
        if self.pending is not None and applied:
            self._apply(self.pending)
        self.pending = None

    # -- helpers for table tests

    def quiet(self, limit: int = 200) -> None:
        """Answer every command `done` and report every VIP operation, until nothing moves."""
        for _ in range(limit):
            if self.vip_news:
                self.observe_vip()
            elif self.pending is not None and self.relay:
                self.answer("done")
            elif self.dying:
                self.exabgp_exits()
            else:
                return
        raise AssertionError("the core never settled")

    def healthy(self) -> None:
        """Probes succeed until health is UP and every route is acknowledged."""
        if not self.alive:
            self.start_exabgp()
        for _ in range(self.cfg.apiserver.rise):
            self.tick(self.cfg.apiserver.interval)
            self.probe(True)
        self.quiet()

    def unhealthy(self) -> None:
        for _ in range(self.cfg.apiserver.fall):
            self.tick(self.cfg.apiserver.interval)
            self.probe(False)

    def sent_since(self, mark: int) -> list[Send]:
        return self.sent[mark:]

"""The core under random interleavings of every event, with its invariants after each step.

A Hypothesis rule-based state machine plays the world (`core_world.World`): probes, time,
drain/undrain/stop/reload requests, ExaBGP starting, dying, going silent, its relay dropping
and coming back, commands answered done, error or not at all (applied or not), VIP changes
reported late, BFD sessions changing state (with or without BFD configured). After every
step:
- nothing but the configured prefixes is ever commanded;
- what ExaBGP really announces is within what the core counts as exposed, and every route
  it announces has its VIP on the interface;
- no announce goes out while health is not announceable, drained, or stopped;
- a stop ends with nothing announced, the VIPs off and ExaBGP gone;
- every waiting client gets exactly one reply, and a "withdrawn" reply is true;
- a BFD change only records and logs (the routers act on BFD), and only neighbors with BFD
  configured have a record.
"""

from __future__ import annotations

import dataclasses
import itertools

from core_world import World, config
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from announcer.config import Config
from announcer.core import Link
from announcer.core import events as ev
from announcer.core.bfd import neighbors_with_bfd
from announcer.core.effects import Action, Exit, Log, Reply, Send, StopExabgp
from announcer.lifecycle import Lifecycle


def with_bfd(cfg: Config) -> Config:
    neighbors = tuple(
        dataclasses.replace(
            n, local_address=cfg.bgp.router_id, bfd=dataclasses.replace(n.bfd, enabled=True)
        )
        for n in cfg.bgp.neighbors
    )
    return dataclasses.replace(cfg, bgp=dataclasses.replace(cfg.bgp, neighbors=neighbors))


CONFIGS = [
    with_bfd(config()),
    config(delay=0.0, withdraw_wait=0.0),
    config(delay=1.0, withdraw_wait=2.0),
]
BFD_STATES = [("up", "none", False), ("init", "none", False), ("down", "detection_expired", False),
              ("down", "neighbor_down", True), ("admin_down", "admin_down", True)]  # fmt: skip
VIPS = set(CONFIGS[0].vips)
NEIGHBORS = {n.address for n in CONFIGS[0].bgp.neighbors}


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World(cfg=CONFIGS[0])
        self.clients = itertools.count(1)
        self.asked: set[int] = set()
        self.stopped_exabgp = False

    @initialize(announcing=st.booleans())
    def begin(self, announcing: bool) -> None:
        """Half the runs start from a node announcing through a connected ExaBGP."""
        if announcing:
            self.w.healthy()

    # -- time and probes

    @rule(good=st.booleans())
    def probe_round(self, good: bool) -> None:
        """Time runs to the next probe, which answers `good`."""
        if not self.w.probing:
            self.w.tick(max(0.0, self.w.state.next_probe - self.w.now))
        if self.w.probing:
            self.w.probe(good)

    @rule(good=st.booleans())
    def health_turns(self, good: bool) -> None:
        """As many probe rounds as it takes `rise` or `fall` to turn health."""
        rounds = self.w.cfg.apiserver.rise if good else self.w.cfg.apiserver.fall
        for _ in range(rounds):
            self.probe_round(good)

    @rule()
    def settle(self) -> None:
        """ExaBGP answers every command, the interface reports, a dying ExaBGP exits."""
        self.w.quiet()

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 4.0]))
    def tick(self, dt: float) -> None:
        self.w.tick(dt)

    # -- requests

    @rule(wait=st.booleans())
    def drain(self, wait: bool) -> None:
        self.w.feed(ev.DrainRequested(client=self._client(), wait=wait))

    @rule()
    def undrain(self) -> None:
        self.w.feed(ev.UndrainRequested(client=self._client()))

    @rule(by_client=st.booleans())
    def stop(self, by_client: bool) -> None:
        self.w.feed(ev.StopRequested(client=self._client() if by_client else None))

    @rule(which=st.integers(0, len(CONFIGS) - 1), restart=st.booleans())
    def reload(self, which: int, restart: bool) -> None:
        self.w.feed(ev.ReloadRequested(CONFIGS[which], restart, client=self._client()))

    # -- ExaBGP and the interface

    @precondition(lambda self: not self.w.alive and not self.stopped_exabgp and not self.w.exited)
    @rule()
    def exabgp_starts(self) -> None:
        self.w.start_exabgp()

    @precondition(lambda self: self.w.alive)
    @rule()
    def exabgp_exits(self) -> None:
        self.w.exabgp_exits()

    @precondition(lambda self: self.w.alive)
    @rule()
    def exabgp_silent(self) -> None:
        self.w.feed(ev.ExabgpSilent())

    @precondition(lambda self: self.w.relay)
    @rule(applied=st.booleans())
    def relay_drops(self, applied: bool) -> None:
        self.w.relay_drops(applied=applied)

    @precondition(lambda self: self.w.alive and not self.w.relay and not self.w.dying)
    @rule()
    def relay_back(self) -> None:
        self.w.relay_back()

    @precondition(lambda self: self.w.pending is not None and self.w.relay)
    @rule()
    def answer_done(self) -> None:
        self.w.answer("done")

    @precondition(lambda self: self.w.pending is not None and self.w.relay)
    @rule()
    def answer_error(self) -> None:
        self.w.answer("error")

    @precondition(lambda self: self.w.pending is not None and self.w.relay)
    @rule(why=st.sampled_from(["timeout", "closed"]), applied=st.booleans())
    def answer_lost(self, why: str, applied: bool) -> None:
        """No acknowledgement: ExaBGP may or may not have acted on the command."""
        self.w.answer(why, applied=applied)

    @precondition(lambda self: self.w.relay)
    @rule()
    def session_up(self) -> None:
        """A BGP session came up: ExaBGP sent it nothing yet (`rib` stays a superset)."""
        [neighbor] = NEIGHBORS
        self.w.feed(ev.SessionUp(neighbor))

    @rule(change=st.sampled_from(BFD_STATES))
    def bfd_changes(self, change: tuple[str, str, bool]) -> None:
        state, diag, planned = change
        [neighbor] = NEIGHBORS
        effects = self.w.feed(ev.BfdChanged(str(neighbor), state, diag, planned))
        assert all(isinstance(e, Log) for e in effects), effects

    @precondition(lambda self: bool(self.w.vip_news))
    @rule()
    def observe_vip(self) -> None:
        self.w.observe_vip()

    # -- invariants

    @invariant()
    def only_configured_prefixes(self) -> None:
        for send in self.w.sent:
            assert send.route.prefix in VIPS and send.route.neighbor in NEIGHBORS

    @invariant()
    def announced_only_with_the_vip_on_lo(self) -> None:
        exposed = self.w.state.exposed()
        for key, route in self.w.rib.items():
            assert key in exposed, f"exabgp announces {route.prefix}, the core thinks not"
            if self.w.state.manage_vips:
                assert route.prefix in self.w.lo, f"{route.prefix} announced, VIP off lo"

    @invariant()
    def no_announce_when_not_allowed(self) -> None:
        s = self.w.state
        announced = [e for e in self.w.effects if isinstance(e, Send)]
        if any(e.action is Action.ANNOUNCE for e in announced):
            assert s.health.announceable
            assert s.lifecycle not in (Lifecycle.DRAINED, Lifecycle.STOPPED)

    @invariant()
    def a_stop_ends_clean(self) -> None:
        if any(isinstance(e, StopExabgp) for e in self.w.effects):
            self.stopped_exabgp = True
            assert not self.w.rib
        if any(isinstance(e, Exit) for e in self.w.effects):
            assert not self.w.rib and not self.w.alive and not self.w.lo
            assert self.w.state.lifecycle is Lifecycle.STOPPED

    @invariant()
    def one_true_reply_each(self) -> None:
        for client, replies in self.w.replies.items():
            assert len(replies) == 1, f"client {client} got {replies}"
        for reply in self.w.effects:  # true when given
            if isinstance(reply, Reply) and reply.text == "drained: routes withdrawn":
                assert not self.w.rib and self.w.pending is None

    @invariant()
    def bfd_recorded_only_where_configured(self) -> None:
        assert set(self.w.state.bfd) <= neighbors_with_bfd(self.w.state.config)

    def teardown(self) -> None:
        """Every run ends with a stop carried through: then every client was answered."""
        w = self.w
        w.feed(ev.StopRequested())
        for _ in range(500):
            if w.exited:
                break
            self._progress()
            self.a_stop_ends_clean()
            self.announced_only_with_the_vip_on_lo()
        assert w.exited, f"never exited: {w.state.lifecycle} {w.state.link}"
        assert not w.rib and not w.lo and not w.alive
        assert self.asked <= set(w.replies), f"unanswered: {self.asked - set(w.replies)}"
        self.one_true_reply_each()

    def _progress(self) -> None:
        w = self.w
        if w.vip_news:
            w.observe_vip()
        elif w.pending is not None and w.relay:
            w.answer("done")
        elif w.dying:
            w.exabgp_exits()
        elif w.probing:
            w.probe(False)
        elif w.alive and not w.relay:
            w.relay_back()
        elif not w.alive and not self.stopped_exabgp and w.state.link is not Link.KILLING:
            w.start_exabgp()
        else:
            w.tick(0.5)

    def _client(self) -> int:
        client = next(self.clients)
        self.asked.add(client)
        return client


CoreMachine.TestCase.settings = settings(
    max_examples=2000,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCore = CoreMachine.TestCase

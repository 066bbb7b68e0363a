"""The BFD session state machine, driven directly: RFC 5880's state diagram as a table,
timers, jitter bounds, Poll/Final and the detection time. `now` is passed in; no clock."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from announcer.bfd.packet import ControlPacket, Diag, Discard, Discarded, State
from announcer.bfd.session import SLOW_INTERVAL, TRANSITIONS, Profile, Session, StateChange

OURS = 0x1111
THEIRS = 0x2222
FAST = Profile(transmit_interval=300_000, receive_interval=300_000, detect_multiplier=3)


def remote(
    state: State, *, poll: bool = False, final: bool = False, tx: int = 300_000, mult: int = 3
) -> ControlPacket:
    return ControlPacket(
        state=state,
        poll=poll,
        final=final,
        detect_mult=mult,
        my_discriminator=THEIRS,
        your_discriminator=0 if state in (State.DOWN, State.ADMIN_DOWN) else OURS,
        desired_min_tx=tx,
        required_min_rx=300_000,
    )


def session_in(state: State, *, random: float = 0.0, profile: Profile = FAST) -> Session:
    """A session brought to `state` the way a peer would bring it there, at time 0."""
    session = Session(discriminator=OURS, profile=profile, random=lambda: random, now=0.0)
    if state is State.INIT:
        session.receive(remote(State.DOWN), 0.0)
    elif state is State.UP:
        session.receive(remote(State.INIT), 0.0)
        session.receive(remote(State.UP, final=True), 0.0)
    elif state is State.ADMIN_DOWN:
        session.admin_down(0.0)
    assert session.state is state
    return session


# RFC 5880 section 6.2's diagram, every (local state, received state) pair.
DIAGRAM = [
    (State.DOWN, State.ADMIN_DOWN, State.DOWN, None),
    (State.DOWN, State.DOWN, State.INIT, Diag.NONE),
    (State.DOWN, State.INIT, State.UP, Diag.NONE),
    (State.DOWN, State.UP, State.DOWN, None),
    (State.INIT, State.ADMIN_DOWN, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.INIT, State.DOWN, State.INIT, None),
    (State.INIT, State.INIT, State.UP, Diag.NONE),
    (State.INIT, State.UP, State.UP, Diag.NONE),
    (State.UP, State.ADMIN_DOWN, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.UP, State.DOWN, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.UP, State.INIT, State.UP, None),
    (State.UP, State.UP, State.UP, None),
]


@pytest.mark.parametrize(("local", "received", "new", "diag"), DIAGRAM)
def test_state_diagram(local: State, received: State, new: State, diag: Diag | None) -> None:
    session = session_in(local)
    output = session.receive(remote(received), 1.0)
    assert session.state is new
    expected = [] if diag is None else [StateChange(local, new, diag)]
    assert output.changes == expected
    if diag is not None:  # a change is sent at once, carrying the new state
        assert output.packets[0].state is new
        assert output.packets[0].diag is diag


@pytest.mark.parametrize("received", list(State))
def test_admin_down_discards_everything(received: State) -> None:
    session = session_in(State.ADMIN_DOWN)
    with pytest.raises(Discarded) as caught:
        session.receive(remote(received), 1.0)
    assert caught.value.reason is Discard.ADMIN_DOWN
    assert session.state is State.ADMIN_DOWN


def test_admin_down_and_back() -> None:
    session = session_in(State.UP)
    output = session.admin_down(1.0)
    assert output.changes == [StateChange(State.UP, State.ADMIN_DOWN, Diag.ADMIN_DOWN)]
    assert output.packets[-1].state is State.ADMIN_DOWN
    assert output.packets[-1].diag is Diag.ADMIN_DOWN
    assert session.admin_up(2.0).changes == [StateChange(State.ADMIN_DOWN, State.DOWN, Diag.NONE)]


@pytest.mark.parametrize("local", [State.INIT, State.UP])
def test_detection_time_expiry_takes_the_session_down(local: State) -> None:
    session = session_in(local)
    if local is State.UP:
        session.receive(remote(State.UP), 10.0)
    else:  # a peer that is not Up sends at the slow rate
        session.receive(remote(State.DOWN, tx=1_000_000), 10.0)
    detect = session.detection_time
    assert detect == pytest.approx(0.9 if local is State.UP else 3.0)
    assert session.tick(10.0 + detect - 0.001).changes == []
    output = session.tick(10.0 + detect)
    assert output.changes == [StateChange(local, State.DOWN, Diag.DETECTION_EXPIRED)]
    assert session.remote_discriminator == 0
    assert output.packets[-1].your_discriminator == 0


def test_a_down_session_never_times_out() -> None:
    session = session_in(State.DOWN)
    for second in range(100):
        assert session.tick(float(second)).changes == []


def test_detection_time_uses_the_slower_of_our_rx_and_their_tx() -> None:
    session = session_in(State.UP)
    session.receive(remote(State.UP, tx=500_000, mult=4), 1.0)
    assert session.detection_time == pytest.approx(2.0)
    assert session.deadline <= 1.0 + 2.0


def test_slow_rate_while_not_up() -> None:
    session = session_in(State.DOWN, random=0.0)
    packet = session.tick(0.0).packets[0]
    assert packet.desired_min_tx == SLOW_INTERVAL
    assert packet.required_min_rx == FAST.receive_interval
    assert session.deadline == pytest.approx(1.0)
    assert session.tick(0.5).packets == []
    assert len(session.tick(1.0).packets) == 1


def test_coming_up_polls_for_the_fast_rate_and_switches_on_final() -> None:
    session = session_in(State.DOWN)
    session.receive(remote(State.DOWN), 0.0)
    output = session.receive(remote(State.UP), 0.1)
    assert session.state is State.UP
    packet = output.packets[-1]
    assert (packet.poll, packet.final, packet.desired_min_tx) == (True, False, 300_000)
    # Sending faster is safe at once: the peer already expects packets every 300 ms.
    assert session.transmit_interval == pytest.approx(0.3)
    session.receive(remote(State.UP), 1.05)
    assert session.tick(1.1).packets[0].poll  # periodic packets keep the Poll bit
    session.receive(remote(State.UP, final=True), 1.3)
    assert not session.polling
    session.receive(remote(State.UP), 2.1)
    assert not session.tick(2.1).packets[0].poll


def test_a_poll_is_answered_at_once_with_final_only() -> None:
    session = session_in(State.UP)
    session.tick(0.0)
    output = session.receive(remote(State.UP, poll=True, tx=100_000), 0.01)
    assert [(p.poll, p.final) for p in output.packets] == [(False, True)]
    assert session.detection_time == pytest.approx(0.9)  # their tx 100 ms < our rx 300 ms


def test_a_final_answer_does_not_move_the_periodic_schedule() -> None:
    session = session_in(State.UP, random=0.0)
    session.receive(remote(State.UP), 5.0)
    assert session.tick(5.0).packets  # the next one is due at 5.3
    assert session.receive(remote(State.UP, poll=True), 5.1).packets[0].final
    assert session.tick(5.29).packets == []
    assert len(session.tick(5.3).packets) == 1


def test_changing_timers_while_up_waits_for_final() -> None:
    session = session_in(State.UP)
    slower = Profile(transmit_interval=600_000, receive_interval=1_000_000, detect_multiplier=3)
    output = session.set_profile(slower, 1.0)
    assert output.packets[0].poll
    assert (output.packets[0].desired_min_tx, output.packets[0].required_min_rx) == (
        600_000,
        1_000_000,
    )
    session.receive(remote(State.UP), 1.01)
    assert session.transmit_interval == pytest.approx(0.3)  # the old rate until the Final
    assert session.detection_time == pytest.approx(3.0)  # accepting slower is safe at once
    session.receive(remote(State.UP, final=True), 1.02)
    assert session.transmit_interval == pytest.approx(0.6)


def test_a_faster_rate_and_a_slower_detection_apply_at_once() -> None:
    session = session_in(State.UP)
    faster = Profile(transmit_interval=100_000, receive_interval=50_000, detect_multiplier=3)
    session.set_profile(faster, 1.0)
    session.receive(remote(State.UP, tx=10_000), 1.01)
    assert session.detection_time == pytest.approx(0.9)  # our old rx 300 ms until the Final
    session.receive(remote(State.UP, tx=10_000, final=True), 1.02)
    assert session.detection_time == pytest.approx(0.15)


def test_changing_timers_while_down_needs_no_poll() -> None:
    session = session_in(State.DOWN)
    output = session.set_profile(Profile(receive_interval=50_000), 1.0)
    assert output.packets == []
    assert session.required_rx == 50_000
    assert session.desired_tx == SLOW_INTERVAL


def test_going_down_returns_to_the_slow_rate_at_once() -> None:
    session = session_in(State.UP)
    session.receive(remote(State.DOWN), 1.0)
    assert session.desired_tx == SLOW_INTERVAL
    assert session.transmit_interval == pytest.approx(1.0)
    assert not session.polling


def test_a_peer_asking_for_packets_sooner_gets_them_sooner() -> None:
    session = session_in(State.DOWN, random=0.0)
    slow_peer = ControlPacket(
        state=State.INIT,
        detect_mult=3,
        my_discriminator=THEIRS,
        your_discriminator=OURS,
        desired_min_tx=1_000_000,
        required_min_rx=1_000_000,
    )
    session.receive(slow_peer, 10.0)  # Up; the next packet in 1 s, as the peer asked
    assert session.deadline == pytest.approx(11.0)
    session.receive(remote(State.UP, poll=True), 10.1)  # now it wants 300 ms
    assert session.deadline == pytest.approx(10.3)


def test_no_periodic_packets_when_the_peer_asks_for_none() -> None:
    session = session_in(State.UP)
    quiet = ControlPacket(
        state=State.UP,
        detect_mult=3,
        my_discriminator=THEIRS,
        your_discriminator=OURS,
        desired_min_tx=300_000,
        required_min_rx=0,
    )
    session.receive(quiet, 1.0)
    assert session.tick(1.5).packets == []
    assert session.deadline == pytest.approx(1.9)  # detection only


@pytest.mark.parametrize(
    ("mult", "random", "fraction"),
    [(3, 0.0, 1.0), (3, 0.999999, 0.75), (3, 0.5, 0.875), (1, 0.0, 0.9), (1, 0.999999, 0.75)],
)
def test_jitter_bounds(mult: int, random: float, fraction: float) -> None:
    profile = Profile(transmit_interval=300_000, receive_interval=300_000, detect_multiplier=mult)
    session = session_in(State.UP, random=random, profile=profile)
    session.receive(remote(State.UP), 10.0)
    session.tick(10.0)
    assert session.deadline - 10.0 == pytest.approx(0.3 * fraction, abs=1e-6)


def test_jitter_keeps_every_interval_within_75_to_100_percent() -> None:
    import random as random_module

    source = random_module.Random(7)  # noqa: S311 - jitter, not secrets
    session = Session(discriminator=OURS, profile=FAST, random=source.random, now=0.0)
    session.receive(remote(State.INIT), 0.0)
    session.receive(remote(State.UP, final=True), 0.0)
    sent: list[float] = []
    while len(sent) < 1000:
        now = session.deadline
        session.receive(remote(State.UP), now)  # keep it Up
        if session.tick(now).packets:
            sent.append(now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent[1:])]
    assert 0.225 <= min(gaps) < 0.235
    assert 0.29 < max(gaps) <= 0.3


def test_outgoing_packets_carry_both_discriminators() -> None:
    session = session_in(State.INIT)
    session.receive(remote(State.DOWN, tx=1_000_000), 5.0)
    packet = session.tick(5.0).packets[0]
    assert (packet.my_discriminator, packet.your_discriminator) == (OURS, THEIRS)
    assert packet.detect_mult == 3


def test_the_discriminator_must_not_be_zero() -> None:
    with pytest.raises(ValueError, match="discriminator 0"):
        Session(discriminator=0, profile=FAST, random=lambda: 0.0, now=0.0)


ALLOWED = {(old, new) for (old, _), new in TRANSITIONS.items() if old is not new} | {
    (State.INIT, State.DOWN),
    (State.UP, State.DOWN),
}


@st.composite
def peer_packets(draw: st.DrawFn) -> ControlPacket:
    state = draw(st.sampled_from(list(State)))
    return ControlPacket(
        state=state,
        diag=draw(st.sampled_from(list(Diag))),
        poll=(poll := draw(st.booleans())),
        final=draw(st.booleans()) and not poll,
        detect_mult=draw(st.integers(1, 255)),
        my_discriminator=THEIRS,
        your_discriminator=draw(st.sampled_from([0, OURS])),
        desired_min_tx=draw(st.sampled_from([0, 1, 10_000, 300_000, 1_000_000, 0xFFFFFFFF])),
        required_min_rx=draw(st.sampled_from([0, 1, 10_000, 300_000, 1_000_000, 0xFFFFFFFF])),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.tuples(st.just("rx"), peer_packets()), st.tuples(st.just("tick"), st.none())),
        max_size=40,
    ),
    st.floats(0, 0.999),
)
def test_any_sequence_of_packets_keeps_the_rules(
    events: list[tuple[str, ControlPacket | None]], random: float
) -> None:
    session = Session(discriminator=OURS, profile=FAST, random=lambda: random, now=0.0)
    now = 0.0
    for kind, packet in events:
        now += 0.05
        if kind == "rx" and packet is not None:
            output = session.receive(packet, now)
        else:
            output = session.tick(now)
        for sent in output.packets:
            assert not (sent.poll and sent.final)
            assert sent.my_discriminator == OURS
            if sent.state is not State.UP:
                assert sent.desired_min_tx >= SLOW_INTERVAL
        for change in output.changes:  # only the diagram's edges, and expiry from Init/Up
            assert (change.old, change.new) in ALLOWED, change
        if kind == "tick":  # nothing is left due: the service would not spin
            assert session.deadline > now

"""One BFD session in asynchronous mode (RFC 5880 section 6): a pure state machine.

The caller feeds it received packets (`receive`) and the passing of time (`tick`), each with
`now` in seconds on a monotonic clock, and gets back an `Output`: the packets to send and the
state changes that happened. `deadline` says when `tick` must next be called. Randomness for
the transmission jitter comes from the injected `random` source (a float in [0, 1)).

What it does, by section: the state diagram (6.2, as the table `TRANSITIONS`); the 1 s slow
rate while not Up (6.8.3); Poll/Final for every timer change while Up, a slower rate and a
shorter detection time only in force once the Final arrives (6.5, 6.8.3); jittered
transmission, 75-100 % of the interval (75-90 % with a detect multiplier of 1, 6.8.7); the
detection time (6.8.4); a Final answered at once to every Poll (6.8.6); AdminDown (6.8.16).
A state change is also sent at once, as FRR does, so that a session comes Up in one round
trip instead of one slow interval.

Must not: read a clock, open sockets, log, or look up which session a packet belongs to (that
is `table`). No Demand mode, Echo function or authentication.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from announcer.bfd.packet import ControlPacket, Diag, Discard, Discarded, State

SLOW_INTERVAL: Final = 1_000_000  # microseconds: the floor of Desired Min TX while not Up
_US: Final = 1e-6

# RFC 5880 section 6.2: (local state, received state) -> new local state. Detection-time
# expiry (Init or Up -> Down) is `tick`'s, AdminDown the operator's.
TRANSITIONS: Final[dict[tuple[State, State], State]] = {
    (State.DOWN, State.ADMIN_DOWN): State.DOWN,
    (State.DOWN, State.DOWN): State.INIT,
    (State.DOWN, State.INIT): State.UP,
    (State.DOWN, State.UP): State.DOWN,
    (State.INIT, State.ADMIN_DOWN): State.DOWN,
    (State.INIT, State.DOWN): State.INIT,
    (State.INIT, State.INIT): State.UP,
    (State.INIT, State.UP): State.UP,
    (State.UP, State.ADMIN_DOWN): State.DOWN,
    (State.UP, State.DOWN): State.DOWN,
    (State.UP, State.INIT): State.UP,
    (State.UP, State.UP): State.UP,
}


@dataclass(frozen=True, kw_only=True)
class Profile:
    """The timers one side asks for; intervals in microseconds, as on the wire."""

    transmit_interval: int = 300_000
    receive_interval: int = 300_000
    detect_multiplier: int = 3

    @classmethod
    def from_seconds(cls, *, transmit: float, receive: float, multiplier: int) -> Profile:
        """The profile for intervals in seconds (as the configuration gives them)."""
        return cls(
            transmit_interval=round(transmit * 1e6),
            receive_interval=round(receive * 1e6),
            detect_multiplier=multiplier,
        )


@dataclass(frozen=True)
class StateChange:
    """The local session moved from `old` to `new`; `diag` says why (NONE when coming up)."""

    old: State
    new: State
    diag: Diag


@dataclass
class Output:
    packets: list[ControlPacket] = field(default_factory=list)
    changes: list[StateChange] = field(default_factory=list)


class Session:
    """The variables of RFC 5880 section 6.8.1 and what changes them."""

    def __init__(
        self,
        *,
        discriminator: int,
        profile: Profile,
        random: Callable[[], float],
        now: float,
    ) -> None:
        if not 0 < discriminator <= 0xFFFFFFFF:
            raise ValueError(f"discriminator {discriminator} is not in 1..4294967295")
        self.discriminator = discriminator
        self.state = State.DOWN
        self.diag = Diag.NONE
        self.remote_state = State.DOWN
        self.remote_diag = Diag.NONE
        self.remote_discriminator = 0
        self.remote_min_rx = 1  # the RFC's initial value: transmit until told otherwise
        self.remote_desired_tx = 0
        self.remote_detect_mult = 0
        self.profile = profile
        self._random = random
        # Advertised values, and the ones in force (they differ during a Poll Sequence).
        self.desired_tx = max(SLOW_INTERVAL, profile.transmit_interval)
        self.required_rx = profile.receive_interval
        self._active_tx = self.desired_tx
        self._active_rx = self.required_rx
        self.polling = False
        self._next_tx = now
        self._last_tx = now
        self._last_rx: float | None = None

    @property
    def transmit_interval(self) -> float:
        """Seconds between packets before jitter; infinite if the peer wants none."""
        if self.remote_min_rx == 0:
            return math.inf
        return max(self._active_tx, self.remote_min_rx) * _US

    @property
    def detection_time(self) -> float:
        """Seconds without a packet after which an Init or Up session goes Down."""
        return self.remote_detect_mult * max(self._active_rx, self.remote_desired_tx) * _US

    @property
    def deadline(self) -> float:
        """The latest `now` at which `tick` must be called."""
        return min(self._tx_due(), self._detect_at())

    def _tx_due(self) -> float:
        # Section 6.8.7: no periodic packets while the peer's Required Min RX is zero.
        return self._next_tx if self.remote_min_rx else math.inf

    def _detect_at(self) -> float:
        if self.state not in (State.INIT, State.UP) or self._last_rx is None:
            return math.inf
        return self._last_rx + self.detection_time

    def receive(self, packet: ControlPacket, now: float) -> Output:
        """A packet the table matched to this session (section 6.8.6, from "set RemoteDiscr");
        raises `Discarded` when the session is AdminDown."""
        interval = self.transmit_interval
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_diag = packet.diag
        self.remote_min_rx = packet.required_min_rx
        if self.transmit_interval < interval:
            self._reschedule()
        self.remote_desired_tx = packet.desired_min_tx
        self.remote_detect_mult = packet.detect_mult
        if packet.final and self.polling:
            self._end_poll()
        if self.state is State.ADMIN_DOWN:
            raise Discarded(Discard.ADMIN_DOWN)
        self._last_rx = now
        output = Output()
        new = TRANSITIONS[self.state, packet.state]
        if new is not self.state:
            self._change(new, Diag.NEIGHBOR_DOWN if new is State.DOWN else Diag.NONE, output, now)
        if packet.poll:
            output.packets.append(self._packet(final=True))
        return output

    def tick(self, now: float) -> Output:
        """Expire the detection time and send the periodic packet when they are due."""
        output = Output()
        if now >= self._detect_at():
            self.remote_discriminator = 0
            self._change(State.DOWN, Diag.DETECTION_EXPIRED, output, now)
        if now >= self._tx_due():
            self._send(output, now)
        return output

    def admin_down(self, now: float) -> Output:
        """Take the session administratively down (the peer must not treat it as a failure)."""
        output = Output()
        if self.state is not State.ADMIN_DOWN:
            self._change(State.ADMIN_DOWN, Diag.ADMIN_DOWN, output, now)
        return output

    def admin_up(self, now: float) -> Output:
        output = Output()
        if self.state is State.ADMIN_DOWN:
            self._change(State.DOWN, Diag.NONE, output, now)
        return output

    def set_profile(self, profile: Profile, now: float) -> Output:
        """New timers: in force at once unless Up, else after a Poll Sequence."""
        self.profile = profile
        output = Output()
        self._apply_profile(output, now)
        return output

    def _apply_profile(self, output: Output, now: float) -> None:
        up = self.state is State.UP
        tx = self.profile.transmit_interval
        tx = tx if up else max(SLOW_INTERVAL, tx)
        rx = self.profile.receive_interval
        if (tx, rx) == (self.desired_tx, self.required_rx):
            return
        self.desired_tx, self.required_rx = tx, rx
        if not up:
            self._end_poll()
            return
        # Sending faster and accepting slower are safe at once; the opposite waits for the
        # Final, since the peer goes on using the values it knew until then (section 6.8.3).
        self._active_tx = min(self._active_tx, tx)
        self._active_rx = max(self._active_rx, rx)
        self.polling = True
        self._send(output, now)

    def _end_poll(self) -> None:
        self.polling = False
        self._active_tx, self._active_rx = self.desired_tx, self.required_rx

    def _change(self, new: State, diag: Diag, output: Output, now: float) -> None:
        output.changes.append(StateChange(self.state, new, diag))
        self.state, self.diag = new, diag
        if new is not State.UP:
            self._end_poll()
        before = len(output.packets)
        self._apply_profile(output, now)
        if len(output.packets) == before:
            self._send(output, now)

    def _send(self, output: Output, now: float) -> None:
        output.packets.append(self._packet(poll=self.polling))
        self._last_tx = now
        self._next_tx = now + self._jittered()

    def _reschedule(self) -> None:
        # The peer now takes packets faster than the pending one was scheduled for (FRR asks
        # for its fast rate as it comes Up and times out at that rate at once): do not wait.
        self._next_tx = min(self._next_tx, self._last_tx + self._jittered())

    def _jittered(self) -> float:
        # Section 6.8.7: reduce each interval by 0-25 %, or by 10-25 % when Detect Mult is 1.
        if self.profile.detect_multiplier == 1:
            return self.transmit_interval * (0.9 - 0.15 * self._random())
        return self.transmit_interval * (1.0 - 0.25 * self._random())

    def _packet(self, *, poll: bool = False, final: bool = False) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            diag=self.diag,
            poll=poll,
            final=final,
            detect_mult=self.profile.detect_multiplier,
            my_discriminator=self.discriminator,
            your_discriminator=self.remote_discriminator,
            desired_min_tx=self.desired_tx,
            required_min_rx=self.required_rx,
        )

"""The demo's words and layout: what a newcomer reads while the demo runs.

`Narrator` turns what the demo reports (a step begins, an event happened after so many
seconds, what r1 and the client see, a failure) into text that fits 80 columns. On a terminal
it shows a spinner with the live state while waiting, and bold/colour; otherwise it writes
plain lines only (a progress line every few seconds of a long wait), no colour.

It must not look at the lab or decide whether something went well: it is told.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import TextIO

import click

from announcer.lab.observe import ClientSample, Serving

WIDTH = 80
INDENT = "   "
_SPINNER = "|/-\\"
_REFRESH = 0.1  # seconds between spinner frames
_PLAIN_PROGRESS = 2.0  # seconds between progress lines when not on a terminal


def _family(vip: str) -> str:
    return "IPv6" if ":" in vip else "IPv4"


def node_list(nodes: Iterable[str]) -> str:
    return ", ".join(sorted(nodes)) or "nobody"


def describe_serving(serving: Serving) -> str:
    """`cp1, cp2, cp3 (IPv4 and IPv6)`, or per family when they differ."""
    if serving.uniform():
        families = " and ".join(_family(vip) for vip in serving.by_vip)
        return f"{node_list(serving.nodes)} ({families})"
    return "; ".join(f"{_family(vip)}: {node_list(n)}" for vip, n in serving.by_vip.items())


def describe_sample(sample: ClientSample) -> str:
    by_node = ", ".join(f"{n} by {node}" for node, n in sorted(sample.answers.items()))
    if not sample.answers:
        why = f" ({sample.failures[0]})" if sample.failures else ""
        return f"{sample.total} new connections, none answered{why}"
    if not sample.failures:
        return f"{sample.total} new connections, all answered: {by_node}"
    failed = f"{len(sample.failures)} FAILED ({sample.failures[0]})"
    return f"{sample.total} new connections, {failed}; answered: {by_node or 'none'}"


class Narrator:
    """Writes the demo's story to `out` (stdout by default)."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self._clock = clock
        self._frames = itertools.cycle(_SPINNER)
        self._status_shown = False
        self._last_status = float("-inf")
        self.router = "r1"
        self._plain_due = _PLAIN_PROGRESS

    # ---- layout --------------------------------------------------------------------------

    def line(
        self, text: str = "", *, indent: str = "", bold: bool = False, fg: str | None = None
    ) -> None:
        """Write `text` wrapped to the width, each line indented."""
        self._clear_status()
        rest = " " * len(indent)
        lines = textwrap.wrap(
            text, WIDTH - 1, initial_indent=indent, subsequent_indent=rest,
            break_on_hyphens=False,  # node and namespace names stay whole
        )  # fmt: skip
        for piece in lines or [""]:
            styled = (
                click.style(piece, fg=fg, bold=bold or None) if self.tty and (bold or fg) else piece
            )
            click.echo(styled, self.out, color=self.tty)

    def status(self, text: str) -> None:
        """Live progress on a terminal: the spinner line, redrawn every _REFRESH seconds."""
        now = self._clock()
        if not self.tty or now - self._last_status < _REFRESH:
            return
        self._last_status = now
        frame = f"\r{INDENT}{next(self._frames)} {text}"[: WIDTH - 1]
        click.echo(f"{frame}\x1b[K", self.out, nl=False, color=True)
        self.out.flush()
        self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            click.echo("\r\x1b[K", self.out, nl=False, color=True)
            self._status_shown = False

    # ---- the story -----------------------------------------------------------------------

    def intro(self, *, router: str, nodes: Iterable[str], client: str, vips: Iterable[str]) -> None:
        self.router = router
        cps = node_list(nodes)
        addresses = " and ".join(vip.split("/")[0] for vip in vips)
        self.line("announcer lab demo", bold=True)
        self.line(
            f"A router {router} (FRR), the control-plane nodes {cps}, each running a "
            f"kube-apiserver (a faithful fake) and announcer, and a {client} machine. "
            f"announcer announces the apiserver VIP ({addresses}) to {router} over BGP "
            f"while its own node's apiserver is ready and the node is not drained; {router} "
            "spreads new connections over every node that announces it (ECMP).",
            indent=INDENT,
        )
        self.line()

    def lab_progress(self, what: str) -> None:
        """A line from bringing the lab up or down: the spinner line, or a plain line."""
        if self.tty:
            self._last_status = float("-inf")  # each line is news: show it now
            self.status(what.strip())
        else:
            self.line(what.strip(), indent=INDENT)

    def lab_done(self, text: str) -> None:
        self.line(text, indent=INDENT)

    def step(self, number: int, *, title: str, command: str | None, explain: str) -> None:
        self.line()
        self.line(f"{number}. {title}", bold=True)
        if command:
            self.line(f"$ {command}", indent=INDENT, fg="cyan")
        self.line(explain, indent=INDENT)

    def action(self, did: str) -> None:
        """The step's action was just taken: the clock of its events starts."""
        self._plain_due = _PLAIN_PROGRESS
        self.event(0.0, did)

    def event(self, elapsed: float, text: str) -> None:
        self.line(text, indent=f"{INDENT}+{elapsed:5.2f} s  ")

    def conclusion(self, text: str) -> None:
        self.line(text, indent=INDENT, fg="green")

    def sees(self, serving: Serving, sample: ClientSample) -> None:
        """Who serves the VIPs, as r1's FIB and the client see it."""
        fib = f"{self.router}'s FIB:"
        self.line(describe_serving(serving), indent=f"{INDENT}{fib:11}")
        self.line(describe_sample(sample), indent=f"{INDENT}client:    ")

    def waiting(self, elapsed: float, serving: Serving) -> None:
        """Still waiting: the spinner with r1's view, or a plain line every few seconds."""
        now = f"{self.router} sends VIP traffic to {node_list(serving.nodes)}"
        if self.tty:
            self.status(f"{elapsed:4.1f} s  {now}")
        elif elapsed >= self._plain_due:
            self._plain_due = elapsed + _PLAIN_PROGRESS
            self.line(f"... {now}", indent=f"{INDENT}+{elapsed:5.2f} s  ")

    def failed(self, message: str) -> None:
        self.line()
        self.line(f"FAILED: {message}", fg="red", bold=True)

    def passed(self, steps: int, seconds: float) -> None:
        self.line()
        self.line(
            f"All {steps} steps behaved as announcer promises ({seconds:.0f} s).",
            fg="green", bold=True,
        )  # fmt: skip

"""Prometheus metrics: what the daemon measures, and the HTTP endpoint that serves them.

Two kinds of metric, in one `CollectorRegistry` per daemon (never prometheus_client's global
one, so tests and two daemons in one process stay apart):

- events, counted as they happen (`Metrics.record_probe`, called after every probe): the probe
  duration histogram, probes by result and reason class, health transitions;
- state, read from the status snapshot at each scrape (`_StateCollector`): health, each VIP
  announced, the drain flag, each neighbor's session, each BFD session (up, state changes,
  why it last went down), BFD packets dropped by reason, ExaBGP restarts, build info. Nothing
  copies that state, so a scrape can never show a stale value.

Labels stay bounded: a probe's free-text reason becomes one of `REASONS`, every label set
that can occur is created at 0 up front (so `increase()` sees the first one), VIPs and
neighbors come from the configuration.

`MetricsServer` answers `GET /metrics` on the configured address from the daemon's own event
loop: a scrape is one snapshot and one encoding (about a millisecond), with no thread and
no lock, and a connection is bounded in size, time and number, per client address too, with
idle connections evicted for newcomers (`announcer.smallserver`), so idle connections cannot
starve a scraper.
Must not: decide or change anything, nor wait on anything but its own clients.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from announcer import __version__
from announcer.bfd import Discard
from announcer.config.model import ListenAddress
from announcer.health import Health, ProbeResult, Transition
from announcer.smallserver import Clients
from announcer.status_protocol import StatusSnapshot

__all__ = [
    "BUCKETS",
    "MAX_CLIENTS",
    "MAX_HEAD",
    "MAX_PER_ADDRESS",
    "READ_TIMEOUT",
    "REASONS",
    "Metrics",
    "MetricsServer",
    "reason_class",
]

log = logging.getLogger(__name__)

# Probes of a loopback apiserver take milliseconds; a timed-out one takes apiserver.timeout.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BY_STATUS: Final = {500: "not_ready", 401: "unauthorized", 403: "forbidden"}
_BY_REASON: Final = {r: r for r in ("timeout", "refused", "reset", "unreachable")}
# What `announcer.probe` may say about a probe that failed without an HTTP answer.
_PROBE_ERRORS: Final = ("os error:", "error:", "protocol error", "connect error", "transport")
REASONS: Final = (
    "ok",  # 200
    "shutdown",  # /readyz failed while /livez answered 200: a planned shutdown
    "not_ready",  # 500
    "unauthorized",  # 401
    "forbidden",  # 403
    "http_error",  # any other status
    "timeout",
    "refused",
    "reset",
    "unreachable",
    "tls",
    "error",  # another transport or protocol error
    "setup",  # no probe could be made: a missing CA, an unreadable certificate or token
)
# Every move the health machine can make (announcer.health.HealthMachine).
_TRANSITIONS: Final = (
    (Health.DOWN, Health.RISING),
    (Health.DOWN, Health.UP),
    (Health.RISING, Health.UP),
    (Health.RISING, Health.DOWN),
    (Health.UP, Health.FALLING),
    (Health.UP, Health.DOWN),
    (Health.FALLING, Health.UP),
    (Health.FALLING, Health.DOWN),
)
MAX_HEAD: Final = 8192
READ_TIMEOUT: Final = 2.0
MAX_CLIENTS: Final = 64
MAX_PER_ADDRESS: Final = 16


def reason_class(result: ProbeResult) -> str:
    """The `reason` label of a probe result: one of `REASONS`, never free text."""
    if result.ok:
        return "ok"
    if result.planned_shutdown:
        return "shutdown"
    if result.status is not None:
        return _BY_STATUS.get(result.status, "http_error")
    reason = result.reason
    if reason in _BY_REASON:
        return _BY_REASON[reason]
    if reason.startswith("tls:"):
        return "tls"
    if reason == "busy" or reason.startswith(_PROBE_ERRORS):
        return "error"
    return "setup"  # announcer.checker's words: the probe could not be built


def exabgp_version() -> str:
    """The version of the ExaBGP package installed with the announcer."""
    try:
        return importlib.metadata.version("exabgp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The daemon's registry. `snapshot` and `exabgp_restarts` are read at every scrape."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], StatusSnapshot],
        exabgp_restarts: Callable[[], int],
        bfd_drops: Callable[[], Mapping[Discard, int]] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._duration = Histogram(
            "announcer_probe_duration_seconds",
            "Time one probe of the local apiserver took (/readyz, and /livez after a failure).",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._probes = Counter(
            "announcer_probes_total",
            "Probes of the local apiserver by result (success, failure) and reason class.",
            ["result", "reason"],
            registry=self.registry,
        )
        self._transitions = Counter(
            "announcer_health_transitions_total",
            "Changes of the health state (down, rising, up, falling).",
            ["from", "to"],
            registry=self.registry,
        )
        for reason in REASONS:
            self._probes.labels(_result(reason), reason)
        for old, new in _TRANSITIONS:
            self._transitions.labels(old.value, new.value)
        self.registry.register(_StateCollector(snapshot, exabgp_restarts))
        self.registry.register(_BfdCollector(snapshot, bfd_drops or dict))

    def record_probe(self, result: ProbeResult, transition: Transition | None) -> None:
        """Count one probe and the health transition it caused, if any."""
        self._duration.observe(max(result.latency, 0.0))
        reason = reason_class(result)
        self._probes.labels(_result(reason), reason).inc()
        if transition is not None:
            self._transitions.labels(transition.old.value, transition.new.value).inc()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape's body and content type, in the format `accept` asks for (Prometheus'
        text format by default, OpenMetrics when asked)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def _result(reason: str) -> str:
    return "success" if reason == "ok" else "failure"


class _StateCollector:
    """Gauges (and the restart counter) read from the daemon at scrape time."""

    def __init__(
        self, snapshot: Callable[[], StatusSnapshot], exabgp_restarts: Callable[[], int]
    ) -> None:
        self._snapshot = snapshot
        self._restarts = exabgp_restarts
        self._build = (__version__, exabgp_version())

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        health = GaugeMetricFamily(
            "announcer_health_state",
            "1 for the current health state of the local apiserver, 0 for the others.",
            labels=["state"],
        )
        for state in Health:
            health.add_metric([state.value], float(snapshot.health is state))
        yield health
        vips = GaugeMetricFamily(
            "announcer_vip_announced",
            "1 while ExaBGP has acknowledged a route for the VIP, else 0.",
            labels=["vip"],
        )
        for vip in snapshot.vips:
            vips.add_metric([vip.prefix], float(vip.announced))
        yield vips
        yield GaugeMetricFamily(
            "announcer_drained",
            "1 while this node is drained (announcer drain), else 0.",
            value=float(snapshot.drained),
        )
        yield from self._speaker(snapshot)

    def _speaker(self, snapshot: StatusSnapshot) -> Iterator[Metric]:
        sessions = GaugeMetricFamily(
            "announcer_bgp_session_up",
            "1 while the BGP session with the neighbor is up, else 0.",
            labels=["neighbor"],
        )
        for neighbor in snapshot.neighbors:
            sessions.add_metric([neighbor.address], float(neighbor.state == "up"))
        yield sessions
        yield CounterMetricFamily(
            "announcer_exabgp_restarts",
            "Times ExaBGP was started again after it exited (not for a configuration change).",
            value=self._restarts(),
        )
        build = GaugeMetricFamily(
            "announcer_build_info",
            "Always 1: the announcer's version and that of the ExaBGP installed with it.",
            labels=["version", "exabgp_version"],
        )
        build.add_metric(list(self._build), 1.0)
        yield build


class _BfdCollector:
    """Each neighbor's BFD session (from the snapshot) and the packets the service dropped."""

    def __init__(
        self,
        snapshot: Callable[[], StatusSnapshot],
        drops: Callable[[], Mapping[Discard, int]],
    ) -> None:
        self._snapshot = snapshot
        self._drops = drops

    def collect(self) -> Iterator[Metric]:
        rows = self._snapshot().bfd
        up = GaugeMetricFamily(
            "announcer_bfd_session_up",
            "1 while the BFD session with the neighbor is up, else 0.",
            labels=["neighbor"],
        )
        changes = CounterMetricFamily(
            "announcer_bfd_state_changes",
            "State changes of the BFD session with the neighbor.",
            labels=["neighbor"],
        )
        last_down = GaugeMetricFamily(
            "announcer_bfd_last_down",
            "1 for the diagnostic of the last time the BFD session went down (none: never).",
            labels=["neighbor", "reason"],
        )
        for row in rows:
            up.add_metric([row.neighbor], float(row.state == "up"))
            changes.add_metric([row.neighbor], row.changes)
            last_down.add_metric([row.neighbor, row.last_down or "none"], 1.0)
        yield from (up, changes, last_down)
        yield self._dropped()

    def _dropped(self) -> Metric:
        dropped = CounterMetricFamily(
            "announcer_bfd_dropped_packets",
            "BFD packets dropped on reception, by reason (bad TTL, length, discriminator...).",
            labels=["reason"],
        )
        counts = self._drops()
        for reason in Discard:
            dropped.add_metric([reason.value], counts.get(reason, 0))
        return dropped


class MetricsServer:
    """`GET /metrics` on `listen`: `await start()` (OSError if the address cannot be bound),
    then `await close()`."""

    def __init__(self, metrics: Metrics, listen: ListenAddress) -> None:
        self._metrics = metrics
        self._listen = listen
        self._server: asyncio.Server | None = None
        self._clients = Clients(capacity=MAX_CLIENTS, per_peer=MAX_PER_ADDRESS)

    @property
    def port(self) -> int:
        """The port bound (the configured one, or the kernel's choice for port 0)."""
        assert self._server is not None and self._server.sockets
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, host=str(self._listen.host), port=self._listen.port, limit=MAX_HEAD
        )
        log.info(
            "metrics on http://%s/metrics",
            self._listen,
            extra={"event": "metrics", "listen": str(self._listen)},
        )

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await self._clients.close()
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ticket = self._clients.admit(peer[0] if isinstance(peer, tuple) else None)
        if ticket is None:
            writer.close()
            return
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                ticket.reading_done()
                writer.write(self._answer(head))
                await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a slow, oversized or vanished client: just hang up
        finally:
            ticket.release()
            writer.close()

    def _answer(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, b"bad request\n")
        method, target = parts[0], parts[1]
        if target.split("?", 1)[0] != "/metrics":
            return _response(404, b"not found: the metrics are at /metrics\n")
        if method not in ("GET", "HEAD"):
            return _response(405, b"method not allowed\n", extra="Allow: GET, HEAD\r\n")
        accept = next(
            (line.split(":", 1)[1] for line in lines[1:] if line.lower().startswith("accept:")),
            "",
        )
        try:
            body, content_type = self._metrics.exposition(accept.strip())
        except Exception:  # a bug must not take the endpoint (or the daemon) down
            log.exception("cannot produce the metrics", extra={"event": "metrics"})
            return _response(500, b"internal error\n")
        return _response(200, body, content_type=content_type, head_only=method == "HEAD")


_REASON_PHRASES: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def _response(
    code: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: str = "",
    head_only: bool = False,
) -> bytes:
    head = (
        f"HTTP/1.1 {code} {_REASON_PHRASES[code]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)

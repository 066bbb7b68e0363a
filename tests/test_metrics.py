"""Prometheus metrics: names, types, labels and values read back with prometheus-client's own
parser; the endpoint over real HTTP; and the whole daemon in-process with metrics on (the
harness of test_daemon.py: fake apiserver over real TLS, fake ExaBGP with the real relay)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import announced, running, until, world_of

from announcer import __version__
from announcer.bfd import Discard
from announcer.config.model import ListenAddress
from announcer.health import Health, ProbeResult, Transition
from announcer.lab.apiserver.states import State
from announcer.lab.pki import LabPki
from announcer.lifecycle import Lifecycle
from announcer.metrics import (
    MAX_CLIENTS,
    MAX_HEAD,
    REASONS,
    Metrics,
    MetricsServer,
    exabgp_version,
    reason_class,
)
from announcer.probe import describe_failure
from announcer.status_protocol import (
    BfdStatus,
    ExabgpStatus,
    NeighborStatus,
    StatusSnapshot,
    VipStatus,
)

SNAPSHOT = StatusSnapshot(
    announced=True,
    health=Health.UP,
    health_since=None,
    drained=False,
    lifecycle=Lifecycle.RUNNING,
    vips=(
        VipStatus("198.51.100.10/32", True, "ready"),
        VipStatus("2001:db8:100::10/128", False, "waiting for exabgp"),
    ),
    neighbors=(
        NeighborStatus("192.0.2.1", "up", None),
        NeighborStatus("2001:db8:1::1", "down", None),
    ),
    last_probe=None,
    exabgp=ExabgpStatus(pid=123, restarts=2),
    transitions=(),
    config_error=None,
)


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Metric, suffix: str = "", **labels: str) -> float:
    """The one sample of `family` named name+suffix with exactly `labels`."""
    found = [
        s.value for s in family.samples if s.name == family.name + suffix and s.labels == labels
    ]
    assert len(found) == 1, f"{family.name}{suffix}{labels}: {family.samples}"
    return found[0]


def scrape_of(metrics: Metrics) -> dict[str, Metric]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return families(body.decode())


def probe(reason: str, *, ok: bool = False, status: int | None = None, latency: float = 0.002,
          planned: bool = False) -> ProbeResult:  # fmt: skip
    return ProbeResult(ok=ok, status=status, reason=reason, latency=latency, at=0.0,
                       planned_shutdown=planned)  # fmt: skip


# ---- reason classes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (probe("ok", ok=True, status=200), "ok"),
        (probe("http 500: shutdown", status=500, planned=True), "shutdown"),
        (probe("http 500: etcd", status=500), "not_ready"),
        (probe("http 500: poststarthook/rbac/bootstrap-roles", status=500), "not_ready"),
        (probe("http 401: unauthorized", status=401), "unauthorized"),
        (probe("http 403: forbidden", status=403), "forbidden"),
        (probe("http 503", status=503), "http_error"),
        (probe("timeout"), "timeout"),
        (probe("refused"), "refused"),
        (probe("reset"), "reset"),
        (probe("unreachable"), "unreachable"),
        (probe("tls: certificate verify failed: self-signed certificate"), "tls"),
        (probe("tls: wrong version number"), "tls"),
        (probe("os error: Permission denied"), "error"),
        (probe("protocol error"), "error"),
        (probe("connect error"), "error"),
        (probe("transport error"), "error"),
        (probe("error: RuntimeError"), "error"),
        (probe("busy"), "error"),
        (probe("no CA file /etc/kubernetes/pki/ca.crt (yet)"), "setup"),
        (probe("/var/lib/kubelet/pki/kubelet-client-current.pem: Permission denied"), "setup"),
    ],
)
def test_a_reason_becomes_one_bounded_class(result: ProbeResult, expected: str) -> None:
    assert reason_class(result) == expected
    assert expected in REASONS


def test_what_the_prober_says_of_an_exception_is_never_setup() -> None:
    for exc in (
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        httpx.ConnectError("x"),
        httpx.RemoteProtocolError("x"),
        RuntimeError("x"),
        OSError(13, "Permission denied"),
    ):
        assert reason_class(probe(describe_failure(exc))) != "setup", exc


# ---- what is exposed ------------------------------------------------------------------------


def test_state_is_read_from_the_snapshot_at_each_scrape() -> None:
    current = [SNAPSHOT]
    restarts = [2]
    metrics = Metrics(snapshot=lambda: current[0], exabgp_restarts=lambda: restarts[0])
    found = scrape_of(metrics)
    assert found["announcer_health_state"].type == "gauge"
    assert {s.labels["state"]: s.value for s in found["announcer_health_state"].samples} == {
        "up": 1.0, "down": 0.0, "rising": 0.0, "falling": 0.0,
    }  # fmt: skip
    vips = found["announcer_vip_announced"]
    assert value(vips, vip="198.51.100.10/32") == 1.0
    assert value(vips, vip="2001:db8:100::10/128") == 0.0
    assert value(found["announcer_drained"]) == 0.0
    sessions = found["announcer_bgp_session_up"]
    assert value(sessions, neighbor="192.0.2.1") == 1.0
    assert value(sessions, neighbor="2001:db8:1::1") == 0.0
    assert found["announcer_exabgp_restarts"].type == "counter"
    assert value(found["announcer_exabgp_restarts"], "_total") == 2.0
    build = found["announcer_build_info"]
    assert value(build, version=__version__, exabgp_version=exabgp_version()) == 1.0

    current[0] = replace(SNAPSHOT, health=Health.FALLING, drained=True,
                         vips=(VipStatus("198.51.100.10/32", False, "drained"),))  # fmt: skip
    restarts[0] = 3
    found = scrape_of(metrics)
    assert value(found["announcer_health_state"], state="falling") == 1.0
    assert value(found["announcer_health_state"], state="up") == 0.0
    assert value(found["announcer_drained"]) == 1.0
    assert value(found["announcer_vip_announced"], vip="198.51.100.10/32") == 0.0
    assert value(found["announcer_exabgp_restarts"], "_total") == 3.0


def test_probes_and_transitions_are_counted_with_bounded_labels() -> None:
    metrics = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
    before = scrape_of(metrics)
    probes = before["announcer_probes"]
    # Every label set exists from the start, at 0: one per reason class.
    assert {(s.labels["result"], s.labels["reason"]) for s in probes.samples
            if s.name.endswith("_total")} == (
        {("success", "ok")} | {("failure", r) for r in REASONS if r != "ok"}
    )  # fmt: skip
    assert all(s.value == 0 for s in probes.samples if s.name.endswith("_total"))
    assert (
        value(before["announcer_health_transitions"], "_total", **{"from": "down", "to": "rising"})
        == 0
    )

    metrics.record_probe(probe("ok", ok=True, status=200, latency=0.003),
                         Transition(Health.DOWN, Health.RISING, 0.0, "ok"))  # fmt: skip
    metrics.record_probe(probe("ok", ok=True, status=200, latency=0.004), None)
    metrics.record_probe(probe("http 500: etcd", status=500, latency=0.3),
                         Transition(Health.UP, Health.FALLING, 0.0, "http 500: etcd"))  # fmt: skip
    metrics.record_probe(probe("tls: unknown ca"), None)
    found = scrape_of(metrics)
    probes = found["announcer_probes"]
    assert value(probes, "_total", result="success", reason="ok") == 2
    assert value(probes, "_total", result="failure", reason="not_ready") == 1
    assert value(probes, "_total", result="failure", reason="tls") == 1
    transitions = found["announcer_health_transitions"]
    assert value(transitions, "_total", **{"from": "down", "to": "rising"}) == 1
    assert value(transitions, "_total", **{"from": "up", "to": "falling"}) == 1
    assert value(transitions, "_total", **{"from": "rising", "to": "up"}) == 0
    duration = found["announcer_probe_duration_seconds"]
    assert duration.type == "histogram"
    assert value(duration, "_count") == 4
    assert value(duration, "_sum") == pytest.approx(0.309)
    assert value(duration, "_bucket", le="0.005") == 3  # 3 ms, 4 ms and the TLS failure's 2 ms
    assert value(duration, "_bucket", le="0.5") == 4


def test_every_name_follows_the_conventions() -> None:
    metrics = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
    # prometheus-client's text format adds a `NAME_created` gauge per counter and histogram
    found = {n: f for n, f in scrape_of(metrics).items() if not n.endswith("_created")}
    assert set(found) == {
        "announcer_probe_duration_seconds", "announcer_probes", "announcer_health_transitions",
        "announcer_health_state", "announcer_vip_announced", "announcer_drained",
        "announcer_bgp_session_up", "announcer_exabgp_restarts", "announcer_build_info",
        "announcer_bfd_session_up", "announcer_bfd_state_changes", "announcer_bfd_last_down",
        "announcer_bfd_dropped_packets",
    }  # fmt: skip
    for family in found.values():
        assert family.documentation
        if family.type == "counter":  # exposed as NAME_total
            assert {s.name for s in family.samples} <= {f"{family.name}_total",
                                                         f"{family.name}_created"}  # fmt: skip


def test_bfd_sessions_and_drops_by_reason() -> None:
    rows = (
        BfdStatus("192.0.2.1", "up", "none", None, changes=3, last_down="detection_expired"),
        BfdStatus("2001:db8:1::1", "down", "none", None, changes=0, last_down=None),
    )
    drops = {Discard.TTL: 4, Discard.UNKNOWN_DISCRIMINATOR: 1}
    metrics = Metrics(
        snapshot=lambda: replace(SNAPSHOT, bfd=rows), exabgp_restarts=lambda: 0,
        bfd_drops=lambda: drops,
    )  # fmt: skip
    found = scrape_of(metrics)
    assert value(found["announcer_bfd_session_up"], neighbor="192.0.2.1") == 1
    assert value(found["announcer_bfd_session_up"], neighbor="2001:db8:1::1") == 0
    assert value(found["announcer_bfd_state_changes"], "_total", neighbor="192.0.2.1") == 3
    last = found["announcer_bfd_last_down"]
    assert value(last, neighbor="192.0.2.1", reason="detection_expired") == 1
    assert value(last, neighbor="2001:db8:1::1", reason="none") == 1
    dropped = found["announcer_bfd_dropped_packets"]
    assert value(dropped, "_total", reason="ttl") == 4
    assert value(dropped, "_total", reason="unknown_discriminator") == 1
    assert value(dropped, "_total", reason="short") == 0


def test_each_daemon_has_its_own_registry() -> None:
    one = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
    two = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
    one.record_probe(probe("refused"), None)
    assert value(scrape_of(one)["announcer_probes"], "_total",
                 result="failure", reason="refused") == 1  # fmt: skip
    assert value(scrape_of(two)["announcer_probes"], "_total",
                 result="failure", reason="refused") == 0  # fmt: skip


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


# ---- the endpoint ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(metrics: Metrics) -> AsyncIterator[str]:
    server = MetricsServer(metrics, ListenAddress(host=ip_address("127.0.0.1"), port=0))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def raw(base: str, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the server answers before it closes (b""
    when it hangs up, a reset included: it may close before reading all we sent)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def test_the_endpoint_serves_get_and_head_on_metrics_only() -> None:
    async def test() -> None:
        metrics = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
        async with serving(metrics) as base, httpx.AsyncClient(base_url=base) as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "announcer_vip_announced" in families(response.text)
            head = await client.head("/metrics")
            assert (head.status_code, head.content) == (200, b"")
            assert (await client.get("/")).status_code == 404
            post = await client.post("/metrics")
            assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
            om = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
            assert om.headers["content-type"].startswith("application/openmetrics-text")
            assert (await raw(base, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400 ")

    asyncio.run(test())


def test_a_stuck_or_oversized_client_does_not_hold_up_a_scrape() -> None:
    async def test() -> None:
        metrics = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
        async with serving(metrics) as base:
            host, port = base.removeprefix("http://").split(":")
            _, silent = await asyncio.open_connection(host, int(port))  # sends nothing
            try:
                answer = await raw(base, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_HEAD)
                assert answer == b""  # hung up on, not answered
                async with httpx.AsyncClient(base_url=base, timeout=2) as client:
                    assert (await client.get("/metrics")).status_code == 200
            finally:
                silent.close()

    asyncio.run(test())


def test_idle_connections_cannot_starve_a_scraper() -> None:
    """More idle connections than the server has slots, from the scraper's own address."""

    async def test() -> None:
        metrics = Metrics(snapshot=lambda: SNAPSHOT, exabgp_restarts=lambda: 0)
        async with serving(metrics) as base:
            host, port = base.removeprefix("http://").split(":")
            idle = [await asyncio.open_connection(host, int(port)) for _ in range(MAX_CLIENTS + 8)]
            try:
                async with httpx.AsyncClient(base_url=base, timeout=2) as client:
                    for _ in range(3):
                        assert (await client.get("/metrics")).status_code == 200
            finally:
                for _, writer in idle:
                    writer.close()

    asyncio.run(test())


def test_a_failing_snapshot_is_a_500_and_the_endpoint_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = [True]

    def snapshot() -> StatusSnapshot:
        if broken[0]:
            raise RuntimeError("a bug")
        return SNAPSHOT

    async def test() -> None:
        metrics = Metrics(snapshot=snapshot, exabgp_restarts=lambda: 0)
        async with serving(metrics) as base, httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/metrics")).status_code == 500
            broken[0] = False
            assert (await client.get("/metrics")).status_code == 200

    asyncio.run(test())
    assert "cannot produce the metrics" in caplog.text


# ---- the daemon -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port: int = probe_socket.getsockname()[1]
        return port


def test_the_daemon_serves_no_metrics_unless_asked(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            assert daemon.metrics_server is None

    asyncio.run(test())


def test_the_daemon_metrics_follow_what_happens(base: Path, pki: LabPki) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"

    async def scrape() -> dict[str, Metric]:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert response.status_code == 200
        return families(response.text)

    async def announced_per_metrics(expected: float) -> bool:
        vips = (await scrape())["announcer_vip_announced"]
        return {s.value for s in vips.samples} == {expected}

    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(metrics={"listen": f"127.0.0.1:{port}"})
            async with running(world) as daemon:
                await until(lambda: announced(world), "announced")
                await until(lambda: announced_per_metrics(1.0), "announced in the metrics")
                found = await scrape()
                assert value(found["announcer_health_state"], state="up") == 1.0
                assert value(found["announcer_probes"], "_total",
                             result="success", reason="ok") >= 2  # fmt: skip
                assert value(found["announcer_health_transitions"], "_total",
                             **{"from": "rising", "to": "up"}) == 1  # fmt: skip
                assert value(found["announcer_probe_duration_seconds"], "_count") >= 2
                # The fake ExaBGP reports a session when told to.
                speaker = daemon.speaker
                assert speaker is not None and speaker.channel is not None
                assert await speaker.channel.send("fake session 192.0.2.1 up", timeout=5)
                found = await scrape()
                assert value(found["announcer_bgp_session_up"], neighbor="192.0.2.1") == 1.0
                assert value(found["announcer_bgp_session_up"], neighbor="2001:db8:1::1") == 0.0

                await world.apiserver.set_state(State.ETCD_DOWN)
                await until(lambda: announced_per_metrics(0.0), "withdrawn in the metrics")
                found = await scrape()
                assert value(found["announcer_health_state"], state="down") == 1.0
                assert value(found["announcer_probes"], "_total",
                             result="failure", reason="not_ready") >= 1  # fmt: skip
                assert value(found["announcer_health_transitions"], "_total",
                             **{"from": "up", "to": "down"}) == 1  # fmt: skip

                assert speaker.pid is not None
                os.kill(speaker.pid, signal.SIGKILL)
                await until(lambda: daemon.speakers.restarts() == 1, "exabgp restarted")
                found = await scrape()
                assert value(found["announcer_exabgp_restarts"], "_total") == 1
            with pytest.raises(httpx.ConnectError):  # the daemon closed the endpoint
                await scrape()

    asyncio.run(test())


def test_a_taken_metrics_port_is_logged_and_the_daemon_announces_anyway(
    base: Path, pki: LabPki, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def test() -> None:
            async with world_of(base, pki) as world:
                world.write(metrics={"listen": f"127.0.0.1:{port}"})
                async with running(world) as daemon:
                    await until(lambda: announced(world), "announced")
                    assert daemon.metrics_server is None

        asyncio.run(test())
    assert f"no metrics: cannot listen on 127.0.0.1:{port}" in caplog.text

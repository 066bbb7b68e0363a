"""The probe: responses and failures through httpx.MockTransport, then real TLS on loopback."""

from __future__ import annotations

import asyncio
import errno
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
import pytest
import trustme

from announcer.probe import Prober, ProbeResult, build_client, first_failed_check

BASE = "https://127.0.0.1:6443"
SHUTDOWN_BODY = (
    "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n"
    "[+]poststarthook/rbac/bootstrap-roles ok\n[+]autoregister-completion ok\n"
    "[-]shutdown failed: reason withheld\nreadyz check failed\n"
)
ETCD_BODY = (
    "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n"
    "[-]etcd-readiness failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n"
)
STARTING_BODY = (
    "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]poststarthook/start-apiserver-admission-initializer ok\n"
    "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n"
    "[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld\n"
    "[+]shutdown ok\nreadyz check failed\n"
)
UNAUTHORIZED_BODY = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    '"message":"Unauthorized","reason":"Unauthorized","code":401}'
)

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def probe_with(
    handler: Handler,
    *,
    base_url: str = BASE,
    token: str | None = None,
    timeout: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    async def main() -> ProbeResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            prober = make_prober(
                client, base_url=base_url, token=token, timeout=timeout, clock=clock
            )
            return await prober.probe()

    return asyncio.run(main())


def make_prober(
    client: httpx.AsyncClient,
    *,
    base_url: str = BASE,
    server_name: str = "kubernetes",
    timeout: float = 2.0,
    token: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Prober:
    return Prober(
        client,
        base_url=base_url,
        server_name=server_name,
        timeout=timeout,
        token=token,
        clock=clock,
    )


@dataclass
class Recorder:
    """A MockTransport handler answering each path with a fixed status and body."""

    routes: dict[str, tuple[int, str]]
    requests: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.routes[request.url.path]
        return httpx.Response(status, text=body)

    @property
    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


# --- responses ---------------------------------------------------------------------------


def test_ready_is_ok_and_asks_only_readyz() -> None:
    recorder = Recorder({"/readyz": (200, "ok")})
    result = probe_with(recorder)
    assert (result.ok, result.status, result.reason, result.planned_shutdown) == (
        True,
        200,
        "ok",
        False,
    )
    assert recorder.paths == ["/readyz"]
    request = recorder.requests[0]
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/readyz"
    assert request.extensions["sni_hostname"] == "kubernetes"
    assert "authorization" not in request.headers


def test_httpx_timeouts_end_each_phase_before_the_deadline() -> None:
    recorder = Recorder({"/readyz": (500, SHUTDOWN_BODY), "/livez": (200, "ok")})
    probe_with(recorder, timeout=2.0)
    for request in recorder.requests:
        phases = request.extensions["timeout"]
        assert set(phases) == {"connect", "read", "write", "pool"}
        assert all(0.0 < value < 2.0 for value in phases.values()), phases


def test_token_is_sent_as_bearer() -> None:
    recorder = Recorder({"/readyz": (200, "ok")})
    probe_with(recorder, token="s3cret")  # noqa: S106
    assert recorder.requests[0].headers["authorization"] == "Bearer s3cret"


def test_trailing_slash_in_base_url() -> None:
    recorder = Recorder({"/readyz": (200, "ok")})
    assert probe_with(recorder, base_url=BASE + "/").ok
    assert str(recorder.requests[0].url) == f"{BASE}/readyz"


@pytest.mark.parametrize(
    ("readyz", "livez", "reason", "planned"),
    [
        ((500, SHUTDOWN_BODY), (200, "ok"), "http 500: shutdown", True),
        ((500, ETCD_BODY), (500, "[-]etcd failed: reason withheld\n"), "http 500: etcd", False),
        ((500, STARTING_BODY), (500, ""), "http 500: poststarthook/rbac/bootstrap-roles", False),
        ((500, ""), (500, ""), "http 500", False),
        ((500, "readyz check failed\n"), (200, "ok"), "http 500", True),
        ((401, UNAUTHORIZED_BODY), (401, UNAUTHORIZED_BODY), "http 401: unauthorized", False),
        ((403, "forbidden"), (403, "forbidden"), "http 403: forbidden", False),
        ((503, '{"message":"apiserver is shutting down"}'), (503, ""), "http 503", False),
        ((429, ""), (429, ""), "http 429", False),
        # A body that says ok does not make a 500 ready: only the status code decides.
        ((500, "ok"), (200, "ok"), "http 500", True),
        ((404, "[-]etcd failed"), (404, ""), "http 404", False),
    ],
)
def test_not_ready_responses(
    readyz: tuple[int, str], livez: tuple[int, str], reason: str, planned: bool
) -> None:
    recorder = Recorder({"/readyz": readyz, "/livez": livez})
    result = probe_with(recorder)
    assert not result.ok
    assert result.status == readyz[0]
    assert result.reason == reason
    assert result.planned_shutdown is planned
    assert recorder.paths == ["/readyz", "/livez"]
    assert recorder.requests[1].extensions["sni_hostname"] == "kubernetes"


def test_a_livez_failure_keeps_the_readyz_reason() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/livez":
            raise httpx.ConnectError("All connection attempts failed")
        return httpx.Response(500, text=SHUTDOWN_BODY)

    result = probe_with(handler)
    assert (result.ok, result.status, result.reason, result.planned_shutdown) == (
        False,
        500,
        "http 500: shutdown",
        False,
    )


@pytest.mark.parametrize(
    ("body", "check"),
    [
        (SHUTDOWN_BODY.replace("[-]shutdown failed: reason withheld", "[+]shutdown ok"), None),
        ("[+]ping ok\n[+]shutdown ok\nreadyz check passed\n", None),
        (SHUTDOWN_BODY, "shutdown"),
        (ETCD_BODY, "etcd"),
        (STARTING_BODY, "poststarthook/rbac/bootstrap-roles"),
        ("warn: some health checks cannot be excluded\n[-]log failed\n", "log"),
        ("[+]etcd ok\n  [-]indented failed\n", None),
        ("", None),
    ],
)
def test_first_failed_check(body: str, check: str | None) -> None:
    assert first_failed_check(body) == check


# --- failures ----------------------------------------------------------------------------


def chained(outer: Exception, *causes: BaseException) -> Exception:
    """`outer` raised from `causes[0]` raised from `causes[1]`..., as httpx/httpcore chain."""
    current: BaseException = outer
    for cause in causes:
        current.__cause__ = cause
        current = cause
    return outer


def cert_error(verify_message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {verify_message}")
    error.verify_message = verify_message
    return error


def alert_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason
    return error


FAILURES: list[tuple[str, Exception, str]] = [
    (
        "refused",
        chained(
            httpx.ConnectError("All connection attempts failed"),
            OSError("All connection attempts failed"),
            ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
        ),
        "refused",
    ),
    ("connect timeout", httpx.ConnectTimeout("timed out"), "timeout"),
    ("read timeout", httpx.ReadTimeout("timed out"), "timeout"),
    ("pool timeout", httpx.PoolTimeout("timed out"), "timeout"),
    (
        "disconnected",
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        "protocol error",
    ),
    (
        "reset",
        chained(httpx.ReadError(""), ConnectionResetError(errno.ECONNRESET, "reset by peer")),
        "reset",
    ),
    (
        "unreachable",
        chained(httpx.ConnectError(""), OSError(errno.ENETUNREACH, "Network is unreachable")),
        "unreachable",
    ),
    (
        "other errno",
        chained(httpx.ConnectError(""), OSError(errno.EMFILE, "Too many open files")),
        "os error: Too many open files",
    ),
    (
        "hostname mismatch",
        chained(
            httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"),
            cert_error("Hostname mismatch, certificate is not valid for 'kubernetes'."),
        ),
        "tls: certificate verify failed: Hostname mismatch, certificate is not valid for "
        "'kubernetes'.",
    ),
    (
        "unknown ca",
        chained(
            httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"),
            cert_error("unable to get local issuer certificate"),
        ),
        "tls: certificate verify failed: unable to get local issuer certificate",
    ),
    (
        "client certificate required",
        chained(httpx.ReadError(""), alert_error("TLSV13_ALERT_CERTIFICATE_REQUIRED")),
        "tls: tlsv13 alert certificate required",
    ),
    (
        "ssl error without reason",
        chained(httpx.ConnectError(""), ssl.SSLError(1, "handshake failure")),
        "tls: handshake failure",
    ),
    ("bare connect error", httpx.ConnectError("weird"), "connect error"),
    ("bare transport error", httpx.WriteError("weird"), "transport error"),
    ("not even httpx", RuntimeError("boom"), "error: RuntimeError"),
]


@pytest.mark.parametrize(
    ("exception", "reason"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_exceptions_become_failed_results(exception: Exception, reason: str) -> None:
    paths: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        raise exception

    result = probe_with(handler)
    assert (result.ok, result.status, result.reason, result.planned_shutdown) == (
        False,
        None,
        reason,
        False,
    )
    # A readyz that never answered is not followed by /livez.
    assert paths == ["/readyz"]


def test_injected_clock_stamps_the_result() -> None:
    ticks = iter([100.0, 100.25])
    result = probe_with(Recorder({"/readyz": (200, "ok")}), clock=lambda: next(ticks))
    assert (result.at, result.latency) == (100.0, 0.25)


# --- deadline, one in flight, cancellation -----------------------------------------------


class Stuck:
    """A handler that never answers the paths it is told to hang on."""

    def __init__(self, hang: set[str], routes: dict[str, tuple[int, str]] | None = None) -> None:
        self.hang = hang
        self.routes = routes or {}
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path in self.hang:
            self.entered.set()
            await self.release.wait()
        status, body = self.routes.get(request.url.path, (200, "ok"))
        return httpx.Response(status, text=body)


def test_hard_deadline_on_a_readyz_that_never_answers() -> None:
    async def main() -> ProbeResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(Stuck({"/readyz"}))) as c:
            return await make_prober(c, timeout=0.2).probe()

    started = time.monotonic()
    result = asyncio.run(main())
    assert time.monotonic() - started < 0.2 + 2.0
    assert (result.ok, result.reason, result.status) == (False, "timeout", None)
    assert 0.15 <= result.latency < 2.2


def test_deadline_covers_livez_and_keeps_the_readyz_reason() -> None:
    stuck = Stuck({"/livez"}, routes={"/readyz": (500, SHUTDOWN_BODY)})

    async def main() -> ProbeResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(stuck)) as client:
            return await make_prober(client, timeout=0.2).probe()

    started = time.monotonic()
    result = asyncio.run(main())
    assert time.monotonic() - started < 0.2 + 2.0
    assert (result.ok, result.status, result.reason) == (False, 500, "http 500: shutdown")
    assert result.planned_shutdown is False


def test_a_second_probe_while_one_is_in_flight_is_busy() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult, ProbeResult]:
        stuck = Stuck({"/readyz"})
        async with httpx.AsyncClient(transport=httpx.MockTransport(stuck)) as client:
            prober = make_prober(client)
            first = asyncio.create_task(prober.probe())
            await stuck.entered.wait()
            second = await prober.probe()
            stuck.release.set()
            stuck.hang.clear()
            return await first, second, await prober.probe()

    first, second, third = asyncio.run(main())
    assert (second.ok, second.reason, second.status) == (False, "busy", None)
    assert first.ok
    assert third.ok


def test_cancelling_a_probe_propagates_and_frees_the_prober() -> None:
    async def main() -> ProbeResult:
        stuck = Stuck({"/readyz"})
        async with httpx.AsyncClient(transport=httpx.MockTransport(stuck)) as client:
            prober = make_prober(client)
            task = asyncio.create_task(prober.probe())
            await stuck.entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stuck.hang.clear()
            return await prober.probe()

    assert asyncio.run(main()).ok


def test_a_failed_probe_frees_the_prober() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("x")
        return httpx.Response(200, text="ok")

    async def main() -> list[ProbeResult]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            prober = make_prober(client)
            return [await prober.probe(), await prober.probe()]

    assert [r.ok for r in asyncio.run(main())] == [False, True]


# --- real TLS on loopback ----------------------------------------------------------------

READY = {"/readyz": (200, "ok"), "/livez": (200, "ok")}


@dataclass
class Seen:
    """What the test server observed, appended to from its handler threads."""

    connections: int = 0
    sni: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    peer_common_names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class TLSServer(http.server.ThreadingHTTPServer):
    """HTTP/1.1 with keep-alive over TLS on 127.0.0.1; the handshake runs in the handler
    thread so a failing one cannot stall the accept loop."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, routes: dict[str, tuple[int, str]]) -> None:
        self.context = context
        self.routes = routes
        self.seen = Seen()
        context.sni_callback = self._record_sni
        super().__init__(("127.0.0.1", 0), TLSHandler)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def _record_sni(self, _obj: object, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.seen.sni.append(name)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, address = self.socket.accept()
        self.seen.connections += 1
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, address

    def handle_error(self, request: object, client_address: object) -> None:
        self.seen.errors.append("handler error")


class TLSHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TLSServer
    request: ssl.SSLSocket

    def handle(self) -> None:
        try:
            self.request.do_handshake()
        except OSError as exc:
            self.server.seen.errors.append(f"handshake: {exc}")
            return
        peer = self.request.getpeercert()
        if peer:
            subject = cast("tuple[tuple[tuple[str, str], ...], ...]", peer["subject"])
            names = [value for rdn in subject for key, value in rdn if key == "commonName"]
            self.server.seen.peer_common_names.extend(names)
        super().handle()

    def do_GET(self) -> None:
        self.server.seen.paths.append(self.path)
        status, body = self.server.routes[self.path]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def tls_server(
    cert: trustme.LeafCert,
    *,
    routes: dict[str, tuple[int, str]] = READY,
    client_ca: trustme.CA | None = None,
) -> Iterator[TLSServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    server = TLSServer(context, routes)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path
    directory: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(ca=ca, ca_file=ca_file, directory=tmp_path)


def probe_real(
    base_url: str,
    ca_file: Path,
    *,
    server_name: str = "kubernetes",
    client_cert_file: Path | None = None,
    client_key_file: Path | None = None,
    timeout: float = 5.0,
    probes: int = 1,
) -> list[ProbeResult]:
    async def main() -> list[ProbeResult]:
        client = build_client(
            ca_file=ca_file, client_cert_file=client_cert_file, client_key_file=client_key_file
        )
        async with client:
            prober = make_prober(
                client, base_url=base_url, server_name=server_name, timeout=timeout
            )
            return [await prober.probe() for _ in range(probes)]

    return asyncio.run(main())


def test_real_tls_verifies_the_server_name_not_the_loopback_address(pki: Pki) -> None:
    with tls_server(pki.ca.issue_cert("kubernetes")) as server:
        [ok] = probe_real(server.base_url, pki.ca_file)
        [by_address] = probe_real(server.base_url, pki.ca_file, server_name="127.0.0.1")
    assert (ok.ok, ok.status, ok.reason) == (True, 200, "ok")
    assert server.seen.sni[0] == "kubernetes"
    # The certificate has no loopback SAN: verifying the address itself must fail.
    assert not by_address.ok
    assert by_address.reason == (
        "tls: certificate verify failed: "
        "IP address mismatch, certificate is not valid for '127.0.0.1'."
    )


def test_real_tls_certificate_without_the_name_fails(pki: Pki) -> None:
    with tls_server(pki.ca.issue_cert("kube-apiserver.example", "127.0.0.1")) as server:
        [result] = probe_real(server.base_url, pki.ca_file)
    assert (result.ok, result.status, result.planned_shutdown) == (False, None, False)
    assert result.reason == (
        "tls: certificate verify failed: "
        "Hostname mismatch, certificate is not valid for 'kubernetes'."
    )
    assert server.seen.paths == []


def test_real_tls_wrong_ca_fails(pki: Pki) -> None:
    other = trustme.CA()
    with tls_server(other.issue_cert("kubernetes")) as server:
        [result] = probe_real(server.base_url, pki.ca_file)
    assert not result.ok
    assert result.reason == "tls: certificate verify failed: unable to get local issuer certificate"
    assert server.seen.paths == []


@pytest.mark.parametrize("combined", [False, True], ids=["cert+key", "one pem"])
def test_real_tls_presents_the_client_certificate(pki: Pki, combined: bool) -> None:
    client = pki.ca.issue_cert("cp1.example", common_name="system:node:cp1")
    cert_file, key_file = pki.directory / "client.crt", pki.directory / "client.key"
    if combined:
        client.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        key: Path | None = None
    else:
        client.cert_chain_pems[0].write_to_path(str(cert_file))
        client.private_key_pem.write_to_path(str(key_file))
        key = key_file
    with tls_server(pki.ca.issue_cert("kubernetes"), client_ca=pki.ca) as server:
        [result] = probe_real(
            server.base_url, pki.ca_file, client_cert_file=cert_file, client_key_file=key
        )
    assert (result.ok, result.reason) == (True, "ok")
    assert server.seen.peer_common_names == ["system:node:cp1"]


def test_real_tls_missing_client_certificate_fails(pki: Pki) -> None:
    with tls_server(pki.ca.issue_cert("kubernetes"), client_ca=pki.ca) as server:
        [result] = probe_real(server.base_url, pki.ca_file)
    assert not result.ok
    # The server sends its alert and closes; the request already written then draws a reset
    # that can overtake the alert, as with a real apiserver.
    assert result.reason in {"tls: tlsv13 alert certificate required", "reset"}
    assert server.seen.paths == []
    assert poll(lambda: any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in e for e in server.seen.errors))


def poll(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_real_planned_shutdown_on_one_kept_alive_connection(pki: Pki) -> None:
    routes = {"/readyz": (500, SHUTDOWN_BODY), "/livez": (200, "ok")}
    with tls_server(pki.ca.issue_cert("kubernetes"), routes=routes) as server:
        results = probe_real(server.base_url, pki.ca_file, probes=2)
    for result in results:
        assert (result.ok, result.status, result.reason) == (False, 500, "http 500: shutdown")
        assert result.planned_shutdown
    assert server.seen.paths == ["/readyz", "/livez"] * 2
    assert server.seen.connections == 1


def test_real_refused(pki: Pki) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    [result] = probe_real(f"https://127.0.0.1:{port}", pki.ca_file)
    assert (result.ok, result.status, result.reason) == (False, None, "refused")


def test_real_handshake_that_never_completes_times_out(pki: Pki) -> None:
    # The kernel completes the TCP handshake for a listening socket nobody accepts from, so the
    # probe hangs waiting for the TLS server hello.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        started = time.monotonic()
        [result] = probe_real(
            f"https://127.0.0.1:{sock.getsockname()[1]}", pki.ca_file, timeout=0.3
        )
        elapsed = time.monotonic() - started
    assert (result.ok, result.reason) == (False, "timeout")
    assert elapsed < 0.3 + 3.0


def test_build_client_ignores_proxy_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.directory / "missing.pem"))
    with tls_server(pki.ca.issue_cert("kubernetes")) as server:
        [result] = probe_real(server.base_url, pki.ca_file)
    assert result.ok

"""The fake apiserver against real TLS clients on loopback, state by state, as
`reference/apiserver-health.md` describes the real one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from announcer.lab.apiserver import FakeApiserver, ListenAddress, Options, State
from announcer.lab.apiserver.control import ControlError, request, serve_control
from announcer.lab.apiserver.credentials import load_tokens, server_tls_context
from announcer.lab.pki import LabPki, write_lab_pki

T = TypeVar("T")
NODE = "cp1"
TOKEN = "lab-admin-token"  # noqa: S105 - a test credential for a loopback server
HEADERS = {
    "audit-id",
    "cache-control",
    "content-length",
    "content-type",
    "date",
    "x-content-type-options",
    "x-lab-node",
}
READYZ_VERBOSE = """\
[+]ping ok
[+]log ok
[+]etcd ok
[+]etcd-readiness ok
[+]informer-sync ok
[+]poststarthook/start-apiserver-admission-initializer ok
[+]poststarthook/generic-apiserver-start-informers ok
[+]poststarthook/priority-and-fairness-config-consumer ok
[+]poststarthook/priority-and-fairness-filter ok
[+]poststarthook/storage-object-count-tracker-hook ok
[+]poststarthook/start-apiextensions-informers ok
[+]poststarthook/start-apiextensions-controllers ok
[+]poststarthook/crd-informer-synced ok
[+]poststarthook/start-system-namespaces-controller ok
[+]poststarthook/start-cluster-authentication-info-controller ok
[+]poststarthook/start-kube-apiserver-identity-lease-controller ok
[+]poststarthook/start-kube-apiserver-identity-lease-garbage-collector ok
[+]poststarthook/start-legacy-token-tracking-controller ok
[+]poststarthook/start-service-ip-repair-controllers ok
[+]poststarthook/rbac/bootstrap-roles ok
[+]poststarthook/scheduling/bootstrap-system-priority-classes ok
[+]poststarthook/priority-and-fairness-config-producer ok
[+]poststarthook/bootstrap-controller ok
[+]poststarthook/start-kubernetes-service-cidr-controller ok
[+]poststarthook/start-kube-aggregator-informers ok
[+]poststarthook/apiservice-status-local-available-controller ok
[+]poststarthook/apiservice-status-remote-available-controller ok
[+]poststarthook/apiservice-registration-controller ok
[+]poststarthook/apiservice-discovery-controller ok
[+]poststarthook/kube-apiserver-autoregistration ok
[+]autoregister-completion ok
[+]poststarthook/apiservice-openapi-controller ok
[+]poststarthook/apiservice-openapiv3-controller ok
[+]shutdown ok
readyz check passed
"""
READYZ_ONLY = ("[+]etcd-readiness ok\n", "[+]informer-sync ok\n", "[+]shutdown ok\n")


def wait_until(predicate: Callable[[], T], *, timeout: float = 5.0) -> T:
    """Poll `predicate` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)
    return value


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("lab"), {NODE: ["198.51.100.10/32"]})


def client_context(pki: LabPki, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


class Background:
    """A FakeApiserver and its control socket on an event loop in a thread."""

    def __init__(self, pki: LabPki, sock: Path, tokens: Path) -> None:
        self.pki = pki
        self.sock = sock
        self.tokens = tokens
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.apiserver = self.call(self._start())
        self.port = self.apiserver.addresses[0].port
        self.http = httpx.Client(verify=client_context(pki), timeout=5.0)

    def call(self, coroutine: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def _start(self) -> FakeApiserver:
        node = self.pki.nodes[NODE]
        apiserver = FakeApiserver(
            node=NODE,
            tls=server_tls_context(cert=node.cert, key=node.key, client_ca=self.pki.ca_cert),
            listen=[ListenAddress("127.0.0.1", 0)],
            tokens=load_tokens(self.tokens),
        )
        await apiserver.start()
        self._control = await serve_control(self.sock, apiserver)
        return apiserver

    async def _stop(self) -> None:
        self._control.close()
        await self.apiserver.close()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.loop.shutdown_default_executor()

    def stop(self) -> None:
        self.http.close()
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def get(
        self,
        path: str,
        *,
        client: httpx.Client | None = None,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """A request to 127.0.0.1 that verifies the certificate for the name `kubernetes`."""
        return (client or self.http).request(
            method,
            self.url(path),
            headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout),
            extensions={"sni_hostname": "kubernetes"},
        )

    def control(self, **message: object) -> dict[str, object]:
        return request(self.sock, message)

    def set(self, state: str, **options: object) -> dict[str, object]:
        return self.control(op="set", state=state, **options)


@pytest.fixture
def server(pki: LabPki, tmp_path: Path) -> Iterator[Background]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{TOKEN},lab-admin,1,"system:masters"\n')
    background = Background(pki, tmp_path / "ctl.sock", tokens)
    try:
        yield background
    finally:
        background.stop()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawConnection:
    """One TLS connection, requests written by hand: for what a pooling client hides."""

    def __init__(self, server: Background, *, timeout: float = 5.0) -> None:
        context = client_context(server.pki)
        context.set_alpn_protocols(["h2", "http/1.1"])
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.tls = context.wrap_socket(sock, server_hostname="kubernetes")
        self._buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.tls.close()

    def send(self, path: str, method: str = "GET") -> None:
        self.tls.sendall(f"{method} {path} HTTP/1.1\r\nHost: kubernetes\r\n\r\n".encode())

    def _fill(self) -> bytes:
        chunk = self.tls.recv(65536)
        self._buffer += chunk
        return chunk

    def response(self) -> RawResponse:
        while b"\r\n\r\n" not in self._buffer:
            assert self._fill(), "connection closed before a response"
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            assert self._fill(), "connection closed within a body"
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return RawResponse(int(status_line.split(" ")[1]), headers, body)

    def closed_by_peer(self) -> bool:
        try:
            return self._fill() == b""
        except (ConnectionResetError, ssl.SSLEOFError):
            return True


# --- TLS ---------------------------------------------------------------------------------


def test_certificate_verifies_as_kubernetes_but_not_as_loopback(server: Background) -> None:
    assert server.get("/readyz").status_code == 200
    # A fresh client: the pooled connection above was verified as "kubernetes".
    with (
        httpx.Client(verify=client_context(server.pki)) as plain,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        plain.get(server.url("/readyz"))


def test_alpn_offers_http1_only_and_keeps_connections_alive(server: Background) -> None:
    with RawConnection(server) as raw:
        assert raw.tls.selected_alpn_protocol() == "http/1.1"
        for path in ("/readyz", "/livez", "/version"):
            raw.send(path)
            response = raw.response()
            assert response.status == 200
            assert "connection" not in response.headers
    assert server.control(op="get")["requests"] == {
        "total": 3,
        "by_path": {"/readyz": 1, "/livez": 1, "/version": 1},
        "by_status": {"200": 3},
    }


# --- ready: bodies, headers, query --------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["readyz", "livez", "healthz"])
def test_ready_answers_ok_without_newline(server: Background, endpoint: str) -> None:
    response = server.get(f"/{endpoint}")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert set(response.headers) == HEADERS
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache, private"
    assert response.headers["content-length"] == "2"
    assert uuid.UUID(response.headers["audit-id"])
    assert response.headers["audit-id"] != server.get(f"/{endpoint}").headers["audit-id"]


@pytest.mark.parametrize("query", ["?verbose", "?verbose=false", "?verbose=1&exclude="])
def test_verbose_lists_checks_in_the_real_order(server: Background, query: str) -> None:
    response = server.get(f"/readyz{query}")
    expected = READYZ_VERBOSE
    if "exclude=" in query:
        expected = expected.replace(
            "readyz check passed\n",
            'warn: some health checks cannot be excluded: no matches for ""\nreadyz check passed\n',
        )
    assert (response.status_code, response.text) == (200, expected)


@pytest.mark.parametrize("endpoint", ["livez", "healthz"])
def test_livez_and_healthz_lack_the_readyz_only_checks(server: Background, endpoint: str) -> None:
    body = server.get(f"/{endpoint}?verbose").text
    expected = READYZ_VERBOSE.replace("readyz check", f"{endpoint} check")
    for line in READYZ_ONLY:
        expected = expected.replace(line, "")
    assert body == expected


def test_exclude_skips_checks_and_warns_about_unknown_names(server: Background) -> None:
    response = server.get("/readyz?verbose&exclude=etcd&exclude=zeta&exclude=alpha&exclude=etcd")
    lines = response.text.splitlines()
    assert "[+]etcd excluded: ok" in lines
    assert "[+]etcd ok" not in lines
    assert lines[-2:] == [
        'warn: some health checks cannot be excluded: no matches for "alpha","zeta"',
        "readyz check passed",
    ]
    # Without verbose a success stays a bare "ok", warning or not.
    assert server.get("/readyz?exclude=nope").content == b"ok"


def test_version_names_the_node(server: Background) -> None:
    response = server.get("/version")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-lab-node"] == NODE
    info = response.json()
    assert info["node"] == NODE
    assert info["gitVersion"].startswith("v1.")
    assert {"major", "minor", "goVersion", "platform"} <= set(info)


# --- authorisation ------------------------------------------------------------------------


def _status(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert body["code"] == response.status_code
    return response.status_code, body["reason"], body["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_is_granted_to_anonymous(server: Background, method: str) -> None:
    response = server.get("/readyz", method=method)
    assert _status(response) == (
        403,
        "Forbidden",
        f'forbidden: User "system:anonymous" cannot {method.lower()} path "/readyz"',
    )


def test_head_is_forbidden_and_has_no_body(server: Background) -> None:
    response = server.get("/livez", method="HEAD")
    assert response.status_code == 403
    assert response.content == b""
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) > 0


@pytest.mark.parametrize("path", ["/readyz/etcd", "/livez/ping", "/readyz/", "/api/v1/nodes"])
def test_other_paths_are_forbidden_to_anonymous_and_to_nodes(server: Background, path: str) -> None:
    message = f'forbidden: User "system:anonymous" cannot get path "{path}"'
    assert _status(server.get(path)) == (403, "Forbidden", message)
    with httpx.Client(verify=client_context(server.pki, with_cert=True)) as node:
        message = f'forbidden: User "system:node:lab" cannot get path "{path}"'
        assert _status(server.get(path, client=node)) == (403, "Forbidden", message)


def test_admins_see_per_check_paths_and_404s(server: Background) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    ok = server.get("/readyz/etcd", headers=admin)
    assert (ok.status_code, ok.text) == (200, "ok")
    server.set("etcd-down")
    failed = server.get("/readyz/etcd-readiness", headers=admin)
    assert failed.status_code == 500
    assert failed.text.startswith("internal server error: ")
    for path in ("/nope", "/readyz/", "/livez/shutdown"):
        missing = server.get(path, headers=admin)
        assert (missing.status_code, missing.text) == (404, "404 page not found\n")
    assert server.get("/lab/nope").status_code == 404


def test_a_bad_bearer_token_is_401_even_with_anonymous_allowed(server: Background) -> None:
    response = server.get("/readyz", headers={"Authorization": "Bearer wrong"})
    assert _status(response) == (401, "Unauthorized", "Unauthorized")
    assert "details" not in response.json()


# --- failing states -----------------------------------------------------------------------


def test_starting_fails_every_endpoint_verbosely(server: Background) -> None:
    server.set("starting")
    for endpoint in ("readyz", "livez", "healthz"):
        response = server.get(f"/{endpoint}")
        assert response.status_code == 500
        assert set(response.headers) == HEADERS
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        lines = response.text.split("\n")
        assert lines[-2:] == [f"{endpoint} check failed", ""]
        assert [line for line in lines if line.startswith("[-]")] == [
            "[-]poststarthook/crd-informer-synced failed: reason withheld",
            "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld",
            "[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld",
        ]


def test_etcd_down_fails_readyz_and_livez(server: Background) -> None:
    server.set("etcd-down")
    readyz = server.get("/readyz")
    failed = [line for line in readyz.text.splitlines() if line.startswith("[-]")]
    assert readyz.status_code == 500
    assert failed == [
        "[-]etcd failed: reason withheld",
        "[-]etcd-readiness failed: reason withheld",
    ]
    livez = server.get("/livez")
    failed = [line for line in livez.text.splitlines() if line.startswith("[-]")]
    assert (livez.status_code, failed) == (500, ["[-]etcd failed: reason withheld"])
    # Excluding the failing check turns it into a success, as on the real one.
    assert server.get("/livez?exclude=etcd").content == b"ok"


def test_unauthorized_wants_a_lab_client_cert_or_token(server: Background) -> None:
    server.set("unauthorized")
    response = server.get("/readyz")
    assert _status(response) == (401, "Unauthorized", "Unauthorized")
    assert response.content.endswith(b"}\n")
    with httpx.Client(verify=client_context(server.pki, with_cert=True)) as node:
        assert server.get("/readyz", client=node).content == b"ok"
    assert server.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"}).content == b"ok"


def test_forbidden_refuses_anonymous_but_not_a_client_cert(server: Background) -> None:
    server.set("forbidden")
    message = 'forbidden: User "system:anonymous" cannot get path "/readyz"'
    assert _status(server.get("/readyz")) == (403, "Forbidden", message)
    with httpx.Client(verify=client_context(server.pki, with_cert=True)) as node:
        assert server.get("/readyz", client=node).content == b"ok"


def test_hang_accepts_but_never_answers(server: Background) -> None:
    server.set("hang")
    with pytest.raises(httpx.ReadTimeout):
        server.get("/readyz", timeout=0.3)
    server.set("ready")
    assert server.get("/readyz").content == b"ok"


def test_tls_stall_accepts_tcp_but_never_finishes_the_handshake(server: Background) -> None:
    server.set("tls-stall")
    with pytest.raises(httpx.ConnectTimeout):
        server.get("/readyz", timeout=0.3)
    # The TCP connection was accepted: the server still holds it.
    assert server.control(op="get")["connections"] == 1
    server.set("ready")
    wait_until(lambda: server.control(op="get")["connections"] == 0)
    assert server.get("/readyz").content == b"ok"


def test_slow_answers_correctly_after_the_delay(server: Background) -> None:
    server.get("/readyz")  # connect first: time only the answer
    server.set("slow", ms=250)
    started = time.monotonic()
    response = server.get("/readyz")
    assert time.monotonic() - started >= 0.25
    assert response.content == b"ok"


def test_stopped_refuses_connections_and_ready_reopens(server: Background) -> None:
    reply = server.set("stopped")
    assert (reply["state"], reply["listening"]) == ("stopped", False)
    with pytest.raises(httpx.ConnectError, match="refused"):
        server.get("/readyz")
    reply = server.set("ready")
    assert reply["addresses"] == [f"127.0.0.1:{server.port}"]
    assert server.get("/readyz").content == b"ok"


@contextmanager
def strict_tls(server: Background) -> Iterator[ssl.SSLSocket]:
    """A kept-alive connection that has served one /readyz and tells a TLS close_notify from
    a bare EOF (Python's defaults hide the difference)."""
    context = client_context(server.pki)
    context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    # Below the server's close linger: a graceful close must not be mistaken for a crash.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=0.4)
    with context.wrap_socket(sock, server_hostname="kubernetes", suppress_ragged_eofs=False) as tls:
        tls.sendall(b"GET /readyz HTTP/1.1\r\nHost: kubernetes\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK")
        yield tls


def test_crash_drops_kept_alive_connections_without_close_notify(server: Background) -> None:
    with strict_tls(server) as tls:
        reply = server.set("crash")
        assert (reply["state"], reply["listening"], reply["connections"]) == ("crash", False, 0)
        with pytest.raises(ssl.SSLError, match="UNEXPECTED_EOF"):
            tls.recv(65536)
    with pytest.raises(httpx.ConnectError, match="refused"):
        server.get("/readyz")
    server.set("ready")
    assert server.get("/readyz").content == b"ok"


def test_crash_drops_a_connection_in_the_middle_of_its_handshake(server: Background) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        wait_until(lambda: server.control(op="get")["connections"] == 1)
        # The server waits for a ClientHello that never comes; the crash must not wait too.
        reply = server.set("crash")
        assert (reply["state"], reply["connections"]) == ("crash", 0)
        assert sock.recv(1) == b""


def test_a_graceful_shutdown_closes_idle_connections_with_close_notify(
    server: Background,
) -> None:
    # The contrast to a crash: the peer learns the end of the stream from TLS itself.
    with strict_tls(server) as tls:
        server.set("shutdown")
        assert tls.recv(65536) == b""


# --- shutdown -----------------------------------------------------------------------------


def _hold(server: Background, seconds: float) -> httpx.Response:
    with httpx.Client(verify=client_context(server.pki), timeout=10.0) as own:
        return server.get(f"/lab/hold?seconds={seconds}", client=own)


def test_shutdown_timeline(server: Background) -> None:
    with RawConnection(server) as warm, RawConnection(server) as fresh:
        warm.send("/readyz")
        assert warm.response().status == 200  # now an idle keep-alive connection
        # `fresh` has done its handshake and sent nothing yet.
        server.set("shutdown", delay=1.0)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(_hold, server, 1.6)
            _during_the_delay(server)

            wait_until(lambda: not server.control(op="get")["listening"])
            with (
                httpx.Client(verify=client_context(server.pki)) as new,
                pytest.raises(httpx.ConnectError, match="refused"),
            ):
                server.get("/readyz", client=new)
            assert wait_until(warm.closed_by_peer)
            fresh.send("/version")
            rejected = fresh.response()
            assert (rejected.status, rejected.headers["retry-after"]) == (503, "1")
            assert rejected.headers["connection"] == "close"
            assert json.loads(rejected.body)["message"] == "apiserver is shutting down"
            answer = held.result(timeout=5)
    assert (answer.status_code, answer.text) == (200, f"{NODE}\n")
    assert answer.headers["connection"] == "close"
    wait_until(lambda: server.control(op="get")["state"] == "stopped")


def _during_the_delay(server: Background) -> None:
    readyz = server.get("/readyz")
    assert readyz.status_code == 500
    assert readyz.text.endswith("[-]shutdown failed: reason withheld\nreadyz check failed\n")
    assert server.get("/livez").content == b"ok"
    assert server.get("/healthz").content == b"ok"
    assert server.get("/version").status_code == 200
    # warm, fresh, the hold and the test's own client
    wait_until(lambda: server.control(op="get")["connections"] == 4)
    assert server.control(op="get")["phase"] == "initiated"  # all of the above within the delay


def test_shutdown_with_retry_after_drains_before_closing(server: Background) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(_hold, server, 1.0)
        wait_until(lambda: server.control(op="get")["in_flight"] == 1)
        reply = server.set("shutdown", delay=0, retry_after=True)
        assert reply["phase"] == "initiated"
        wait_until(lambda: server.control(op="get")["phase"] == "not-accepting")
        turned_away = server.get("/version")
        assert turned_away.status_code == 429
        assert turned_away.headers["retry-after"] == "5"
        assert turned_away.headers["connection"] == "close"
        assert turned_away.text == "The apiserver is shutting down, please try again later.\n"
        assert server.get("/readyz").status_code == 500
        assert server.get("/livez").content == b"ok"
        assert server.control(op="get")["listening"]  # the hold is still in flight
        assert held.result(timeout=5).text == f"{NODE}\n"
    wait_until(lambda: server.control(op="get")["state"] == "stopped")
    assert not server.control(op="get")["listening"]


def test_second_shutdown_stops_at_once(server: Background) -> None:
    server.set("shutdown", delay=30)
    reply = server.set("shutdown", delay=30)
    assert (reply["state"], reply["listening"]) == ("stopped", False)


# --- control protocol ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"op": "set", "state": "sleepy"}, "state: 'sleepy' is not one of ready, starting"),
        ({"op": "set", "state": "slow", "ms": -1}, "ms: -1 is not a finite number >= 0"),
        ({"op": "set", "state": "shutdown", "retry_after": 1}, "retry_after: 1 is not true"),
        ({"op": "set", "state": "ready", "colour": "red"}, "set: unknown keys ['colour']"),
        ({"op": "reboot"}, "op: 'reboot' is not one of get, set"),
    ],
)
def test_control_rejects_bad_requests(
    server: Background, message: dict[str, object], error: str
) -> None:
    with pytest.raises(ControlError, match=error.replace("[", r"\[").replace("]", r"\]")):
        request(server.sock, message)
    assert server.control(op="get")["state"] == "ready"


def test_control_get_reports_state_and_options(server: Background) -> None:
    server.set("slow", ms=5)
    reply = server.control(op="get")
    assert reply["ok"] is True
    assert reply["node"] == NODE
    assert reply["state"] == "slow"
    assert reply["options"] == {"delay": 0.0, "retry_after": False, "ms": 5.0}
    assert reply["listening"] is True


def test_states_and_options_round_trip_in_process(pki: LabPki) -> None:
    async def scenario() -> list[State]:
        node = pki.nodes[NODE]
        tls = server_tls_context(cert=node.cert, key=node.key, client_ca=pki.ca_cert)
        listen = [ListenAddress("127.0.0.1", 0)]
        seen = []
        async with FakeApiserver(node=NODE, tls=tls, listen=listen, state=State.STOPPED) as api:
            seen.append(api.state)
            assert not api.listening
            await api.set_state(State.SLOW, Options(ms=1))
            seen.append(api.state)
            assert api.listening
        return seen

    assert asyncio.run(scenario()) == [State.STOPPED, State.SLOW]


# --- the process --------------------------------------------------------------------------


def test_process_serves_until_sigterm(pki: LabPki, tmp_path: Path) -> None:
    node = pki.nodes[NODE]
    sock = tmp_path / "lab-apiserver.sock"
    argv = [
        sys.executable, "-m", "announcer.lab.apiserver",
        "--node", NODE, "--cert", str(node.cert), "--key", str(node.key),
        "--client-ca", str(pki.ca_cert), "--control", str(sock),
        "--listen", "127.0.0.1:0", "--state", "starting",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            reply = wait_until(lambda: request(sock, {"op": "get"}) if sock.exists() else {})
            assert reply["state"] == "starting"
            addresses = reply["addresses"]
            assert isinstance(addresses, list)
            port = str(addresses[0]).rpartition(":")[2]
            with httpx.Client(verify=client_context(pki)) as http:
                url = f"https://127.0.0.1:{port}"
                kubernetes = {"sni_hostname": "kubernetes"}
                assert http.get(f"{url}/readyz", extensions=kubernetes).status_code == 500
                request(sock, {"op": "set", "state": "ready"})
                assert http.get(f"{url}/readyz", extensions=kubernetes).content == b"ok"
                assert http.get(f"{url}/version", extensions=kubernetes).json()["node"] == NODE
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "state starting -> ready" in stderr
    assert not sock.exists()


def test_connect_hang_neither_accepts_nor_refuses_a_tcp_connect(server: Background) -> None:
    server.get("/readyz")  # a pooled connection, dropped by the state change
    reply = server.set("connect-hang")
    assert (reply["state"], reply["listening"], reply["connections"]) == ("connect-hang", False, 0)
    probe = socket.socket()
    try:
        probe.settimeout(0.5)
        with pytest.raises(TimeoutError):  # not refused: the SYN is dropped
            probe.connect(("127.0.0.1", server.port))
    finally:
        probe.close()
    with pytest.raises(httpx.ConnectTimeout):
        server.get("/readyz", timeout=0.3)
    server.set("ready")
    assert server.get("/readyz").content == b"ok"

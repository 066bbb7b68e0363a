"""The probe: one HTTPS check of the local apiserver's /readyz, returned as a `ProbeResult`.

It owns the request (the verified server name, the optional bearer token), the hard
per-probe deadline, the one-probe-in-flight rule, the reading of a failed response (the first
failing check of a 500 body) and the translation of every httpx/OSError/ssl exception into a
short reason, done once in `describe_failure`. After a /readyz that answered with anything but
200 it asks /livez once, within the same deadline: 200 there means a planned shutdown.

It must not retry, sleep, keep history or decide health (that is `announcer.health`), and it
never raises: a probe that cannot be made is a failed probe. The HTTP client is injected (one
for the life of the process, built by `build_client`), the clock too.
"""

from __future__ import annotations

import asyncio
import errno
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from announcer.health import ProbeResult

__all__ = [
    "ProbeResult",
    "Prober",
    "build_client",
    "client_with",
    "describe_failure",
    "describe_response",
    "first_failed_check",
    "tls_context",
]

Clock = Callable[[], float]

# The share of the time left that httpx may spend in one phase (connect, TLS, read).
_PHASE_SHARE = 0.8
_FAILED_CHECK = re.compile(r"^\[-\](\S+) failed", re.MULTILINE)
_STATUS_WORDS = {401: "unauthorized", 403: "forbidden"}
_ERRNO_REASONS = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.ECONNABORTED: "reset",
    errno.EPIPE: "reset",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EADDRNOTAVAIL: "unreachable",
}


def build_client(
    *,
    ca_file: Path,
    client_cert_file: Path | None = None,
    client_key_file: Path | None = None,
) -> httpx.AsyncClient:
    """The one client the daemon probes with: `client_with(tls_context(...))`."""
    context = tls_context(
        ca_file=ca_file, client_cert_file=client_cert_file, client_key_file=client_key_file
    )
    return client_with(context)


def tls_context(
    *,
    ca_file: Path,
    client_cert_file: Path | None = None,
    client_key_file: Path | None = None,
) -> ssl.SSLContext:
    """Verifies against `ca_file` and presents the client certificate, if any.

    `client_key_file` may be omitted when `client_cert_file` holds the key too (as the
    kubelet's `kubelet-client-current.pem` does). Raises OSError/ssl.SSLError for unreadable
    or invalid files: that is a configuration error, reported before any probe runs.
    """
    context = ssl.create_default_context(cafile=str(ca_file))
    if client_cert_file is not None:
        keyfile = None if client_key_file is None else str(client_key_file)
        context.load_cert_chain(str(client_cert_file), keyfile)
    return context


def client_with(context: ssl.SSLContext) -> httpx.AsyncClient:
    """HTTP/1.1 over `context`, a single kept-alive connection, and blind to proxy and CA
    environment variables."""
    return httpx.AsyncClient(
        verify=context,
        http2=False,
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


class Prober:
    """Probes `base_url` (e.g. https://127.0.0.1:6443) verifying its certificate under
    `server_name`, each probe bounded by `timeout` seconds in total.

    A call made while another is in flight does not wait and does not raise: it returns a
    failed result with reason "busy" (the daemon never does this; the guard keeps the
    one-connection client from queueing probes behind a stuck one).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        server_name: str,
        timeout: float,
        token: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._client = client
        # Parsed once: a probe runs every interval for the life of the process.
        base = base_url.rstrip("/")
        self._urls = {path: httpx.URL(base + path) for path in ("/readyz", "/livez")}
        self._server_name = server_name
        self._timeout = timeout
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._clock = clock
        self._in_flight = False

    async def probe(self) -> ProbeResult:
        """One GET /readyz (and, if it answered non-200, one GET /livez); never raises."""
        at = self._clock()
        if self._in_flight:
            return self._result(at, ok=False, status=None, reason="busy")
        self._in_flight = True
        try:
            return await self._check(at)
        finally:
            self._in_flight = False

    async def _check(self, at: float) -> ProbeResult:
        # The hard deadline is on the loop's clock: the injected one only stamps results.
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                readyz = await self._get("/readyz", deadline)
        except Exception as exc:  # any failure to probe is a failed probe, by design
            return self._result(at, ok=False, status=None, reason=describe_failure(exc))
        if readyz.status_code == 200:
            return self._result(at, ok=True, status=200, reason="ok")
        # Only a /readyz that answered can be a planned shutdown: when the listener is gone
        # (refused, TLS failure) /livez cannot answer either, and a timeout used the deadline.
        try:
            async with asyncio.timeout_at(deadline):
                livez = await self._get("/livez", deadline)
            planned = livez.status_code == 200
        except Exception:  # /livez only refines a failure that is already certain
            planned = False
        return self._result(
            at,
            ok=False,
            status=readyz.status_code,
            reason=describe_response(readyz),
            planned_shutdown=planned,
        )

    async def _get(self, path: str, deadline: float) -> httpx.Response:
        # httpx's own per-phase timeouts end a single stuck phase a little before the hard
        # deadline: they close the connection cleanly, whereas a cancellation in the middle of
        # the TLS handshake leaves httpcore's socket to the garbage collector.
        remaining = deadline - asyncio.get_running_loop().time()
        return await self._client.get(
            self._urls[path],
            headers=self._headers,
            timeout=max(remaining * _PHASE_SHARE, 0.0),
            # Connect to the loopback address but verify (and send SNI for) the name the
            # kubeadm serving certificate carries: it has no loopback SAN.
            extensions={"sni_hostname": self._server_name},
        )

    def _result(
        self,
        at: float,
        *,
        ok: bool,
        status: int | None,
        reason: str,
        planned_shutdown: bool = False,
    ) -> ProbeResult:
        return ProbeResult(
            ok=ok,
            status=status,
            reason=reason,
            latency=self._clock() - at,
            at=at,
            planned_shutdown=planned_shutdown,
        )


def describe_response(response: httpx.Response) -> str:
    """`http <code>`, plus the first failing check of a 500 body or a word for 401/403."""
    code = response.status_code
    detail = first_failed_check(response.text) if code == 500 else _STATUS_WORDS.get(code)
    return f"http {code}" if detail is None else f"http {code}: {detail}"


def first_failed_check(body: str) -> str | None:
    """The name of the first `[-]name failed` line of a verbose health body, if any."""
    match = _FAILED_CHECK.search(body)
    return None if match is None else match.group(1)


def describe_failure(exc: BaseException) -> str:
    """The one translation of an exception raised while probing into a short reason.

    httpx wraps the cause (httpx.ConnectError from httpcore.ConnectError from OSError from
    ConnectionRefusedError...), so the chain is searched for the most telling exception.
    """
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    for cause in _chain(exc):
        reason = _describe_cause(cause)
        if reason is not None:
            return reason
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol error"
    if isinstance(exc, httpx.ConnectError):
        return "connect error"
    if isinstance(exc, httpx.TransportError):
        return "transport error"
    return f"error: {type(exc).__name__}"


def _describe_cause(exc: BaseException) -> str | None:
    # OpenSSL sets verify_message and reason; an SSLError built in Python has neither.
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = getattr(exc, "verify_message", None) or "unknown reason"
        return f"tls: certificate verify failed: {message}"
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "reason", None) or exc.strerror or "error"
        return f"tls: {str(detail).lower().replace('_', ' ')}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_REASONS.get(exc.errno, f"os error: {exc.strerror or exc.errno}")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes, outermost first, without looping on cyclic chains."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen

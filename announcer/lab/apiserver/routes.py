"""What the fake apiserver answers to one request, in the order of the real filter chain.

Owns authentication and authorisation of a request (anonymous, client certificate, bearer
token), the shutdown filters (429 / 503) and the handlers (/readyz, /livez, /healthz, /version,
per-check paths, the lab's /lab/hold). Pure: it must not do I/O, wait or keep counters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from announcer.lab.apiserver import checks
from announcer.lab.apiserver.http11 import Request, Response
from announcer.lab.apiserver.states import ShutdownPhase, State

GIT_VERSION = "v1.33.1"
MAX_HOLD_SECONDS = 3600.0
TEXT = "text/plain; charset=utf-8"
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_CACHE_CONTROL = ("Cache-Control", "no-cache, private")
# `system:public-info-viewer`, bound to every user, anonymous included.
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})
# Never turned away during shutdown (`pathPrefixesExemptFromRetryAfter`).
_PROBE_PREFIXES = ("/readyz", "/livez", "/healthz", "/metrics")


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.user == ANONYMOUS.user


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class View:
    """The server's state as one request sees it."""

    node: str
    state: State
    phase: ShutdownPhase = ShutdownPhase.NONE
    retry_after: bool = False


@dataclass(frozen=True)
class Hold:
    """Answer `/lab/hold` after `seconds` (a long request, for shutdown tests)."""

    seconds: float


def is_probe(path: str) -> bool:
    """Health probes (and metrics) are never turned away during a shutdown."""
    return path.startswith(_PROBE_PREFIXES)


def authenticate(
    request: Request, *, peer: Identity | None, tokens: Mapping[str, Identity]
) -> Identity | None:
    """Who sent `request`; None when it carries a credential that does not check out.

    A verified client certificate wins; any bearer token not in `tokens` is rejected even
    while anonymous requests are allowed, as the real authenticator union does. Other
    schemes (Basic) are read by no authenticator: the request stays anonymous.
    """
    if peer is not None:
        return peer
    authorization = request.header("authorization")
    if authorization is None:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return ANONYMOUS
    return tokens.get(token.strip())


def respond(request: Request, *, view: View, identity: Identity | None) -> Response | Hold:
    """The response (or the hold) for `request` from a server in `view`."""
    turned_away = view.phase is ShutdownPhase.NOT_ACCEPTING and not is_probe(request.path)
    if turned_away and view.retry_after:
        return Response(
            429,
            (("Content-Type", TEXT), _NOSNIFF, ("Retry-After", "5")),
            b"The apiserver is shutting down, please try again later.\n",
            close=True,
        )
    if turned_away:
        return _shutting_down().with_headers(_CACHE_CONTROL)
    answer = _authorized(request, view=view, identity=identity)
    if isinstance(answer, Hold):
        return answer
    return answer.with_headers(_CACHE_CONTROL)


def _authorized(request: Request, *, view: View, identity: Identity | None) -> Response | Hold:
    if request.path.startswith("/lab/"):
        # Lab instruments, not part of the real API: open to every client.
        return _lab(request, view)
    if identity is None or (view.state is State.UNAUTHORIZED and identity.anonymous):
        return status(401, "Unauthorized", "Unauthorized", request=request, details=False)
    if not _allowed(request, view=view, identity=identity):
        verb = request.method.lower()
        message = (
            f"forbidden: User {checks.go_quote(identity.user)} cannot {verb} path "
            f"{checks.go_quote(request.path)}"
        )
        return status(403, "Forbidden", message, request=request)
    return _route(request, view)


def _allowed(request: Request, *, view: View, identity: Identity) -> bool:
    if "system:masters" in identity.groups:
        return True
    if view.state is State.FORBIDDEN and identity.anonymous:
        # A new cluster before the RBAC bootstrap roles exist.
        return False
    return request.method == "GET" and request.path in PUBLIC_PATHS


def _route(request: Request, view: View) -> Response:
    failing = checks.failing_checks(view.state)
    endpoint, slash, check = request.path[1:].partition("/")
    if endpoint in checks.CHECKS:
        if not slash:
            return _text(*checks.root_health(endpoint, request.query, failing))
        found = checks.single_check(endpoint, check, failing)
        if found is not None:
            return _text(*found)
    if request.path in ("/version", "/version/"):
        return version(view.node)
    return not_found()


def _lab(request: Request, view: View) -> Response | Hold:
    if request.path != "/lab/hold":
        return not_found()
    raw = dict(request.query).get("seconds", "0")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0.0 <= seconds <= MAX_HOLD_SECONDS:
        body = f"seconds: {raw!r} is not a number of seconds in [0, {MAX_HOLD_SECONDS:g}]\n"
        return _text(400, body)
    return Hold(seconds)


def held(view: View) -> Response:
    """The answer to `/lab/hold` once the hold is over."""
    return _text(200, f"{view.node}\n").with_headers(_CACHE_CONTROL)


def _text(code: int, body: str) -> Response:
    return Response(code, (("Content-Type", TEXT), _NOSNIFF), body.encode())


def not_found() -> Response:
    """Go's http.NotFound, which the apiserver's last handler falls back to."""
    return _text(404, "404 page not found\n")


def version(node: str) -> Response:
    """`/version` as `WriteRawJSON` writes it (indented), plus the lab's node name."""
    info = {
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T08:19:08Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
        "node": node,
    }
    body = json.dumps(info, indent=2, ensure_ascii=False).encode()
    return Response(200, (("Content-Type", "application/json"),), body)


def status(
    code: int, reason: str, message: str, *, request: Request | None = None, details: bool = True
) -> Response:
    """A metav1.Status failure, encoded as the apiserver's JSON serializer does."""
    obj: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        obj["details"] = {}
    obj["code"] = code
    if request is not None and _pretty(request):
        body = json.dumps(obj, indent=2, ensure_ascii=False)
    else:
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
    return Response(code, (("Content-Type", "application/json"), _NOSNIFF), body.encode())


def _pretty(request: Request) -> bool:
    # The apiserver indents for browsers and command-line tools.
    agent = request.header("user-agent") or ""
    if agent.startswith(("curl", "Wget", "Mozilla/5.0")):
        return True
    return dict(request.query).get("pretty", "") in ("1", "true")


def _shutting_down() -> Response:
    # WithWaitGroup's answer once the shutdown delay has elapsed (encoder newline + its own).
    answer = status(503, "ServiceUnavailable", "apiserver is shutting down", details=False)
    return Response(503, (*answer.headers, ("Retry-After", "1")), answer.body + b"\n", close=True)

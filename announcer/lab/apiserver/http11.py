"""The little of HTTP/1.1 the fake apiserver speaks: request heads in, responses out.

Owns parsing of a request head and serialisation of a response. It must not read sockets
nor decide what to answer.
"""

from __future__ import annotations

import http
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes
MAX_BODY_BYTES = 3 << 20  # the apiserver's request body limit


class BadRequestError(Exception):
    """The bytes received are not an HTTP/1.1 request this server can answer."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    version: str
    headers: tuple[tuple[str, str], ...]  # names in lower case, in arrival order

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def content_length(self) -> int:
        raw = self.header("content-length")
        if raw is None:
            return 0
        if not raw.isdigit() or int(raw) > MAX_BODY_BYTES:
            raise BadRequestError(f"bad Content-Length {raw!r}")
        return int(raw)


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # Tear the connection down after this response (Go: `Connection: close`).
    close: bool = False

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def with_headers(self, *extra: tuple[str, str]) -> Response:
        names = {k.lower() for k, _ in extra}
        kept = tuple((k, v) for k, v in self.headers if k.lower() not in names)
        return Response(self.status, kept + extra, self.body, self.close)

    def closing(self) -> Response:
        return Response(self.status, self.headers, self.body, close=True)


@dataclass
class HeadBuffer:
    """Bytes received on a connection and not yet consumed."""

    data: bytearray = field(default_factory=bytearray)

    def take_head(self) -> bytes | None:
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            if len(self.data) > MAX_HEAD_BYTES:
                raise BadRequestError("request head too large")
            return None
        head = bytes(self.data[: end + 4])
        del self.data[: end + 4]
        return head


def parse_head(head: bytes) -> Request:
    """Parse a request line and header fields (terminated by an empty line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes any byte
        raise BadRequestError(str(exc)) from exc
    request_line, *header_lines = text.split("\r\n")[:-2]
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
        raise BadRequestError(f"malformed request line {request_line!r}")
    method, target, version = parts
    if not target.startswith("/"):
        raise BadRequestError(f"unsupported request target {target!r}")
    headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(f"malformed header line {line!r}")
        headers.append((name.lower(), value.strip()))
    url = urlsplit(target)
    query = tuple(parse_qsl(url.query, keep_blank_values=True))
    return Request(method, unquote(url.path), query, version, tuple(headers))


def render(response: Response, *, head_only: bool = False) -> bytes:
    """Serialise a response the way Go's net/http would (sorted headers, Date, length)."""
    reason = http.HTTPStatus(response.status).phrase
    headers = dict(response.headers)
    headers["Date"] = formatdate(usegmt=True)
    headers["Content-Length"] = str(len(response.body))
    if response.close:
        headers["Connection"] = "close"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in sorted(headers.items())]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


BAD_REQUEST = Response(
    400,
    (("Content-Type", "text/plain; charset=utf-8"),),
    b"400 Bad Request",
    close=True,
)

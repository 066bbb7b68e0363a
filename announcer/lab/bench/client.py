"""The benchmark's load client: new HTTPS connections to the VIP at a steady rate, each one
recorded. It runs inside the lab's client node:

    python -m announcer.lab.bench.client --vip 198.51.100.10 --ca /etc/announcer-lab/ca.crt \
        --rate 200 --out FILE

Request i starts at `t0 + i / rate` whatever the others are doing (an open loop, as many
independent clients would), opens a new TCP connection and a full TLS handshake (verified
against the lab CA under the name `kubernetes`), sends `GET /version` with `Connection: close`
and reads the answer. Each request is recorded with its start and end on `time.monotonic()`
(CLOCK_MONOTONIC, one clock for every network namespace, so the times compare with the FIB
watcher's and the fault injector's), its outcome (`OUTCOMES`) and the node that answered (the
fake apiserver's `X-Lab-Node` header). It prints `started <t0>` once running, stops starting
requests when its standard input closes, lets those in flight finish (each has a deadline),
writes one JSON object per request to `--out` and exits 0.

It owns the wire side and the record format; it must not interpret results (`traffic` does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

API_NAME, API_PORT = "kubernetes", 6443
NODE_HEADER = b"x-lab-node"
OK, REFUSED, RESET, TIMEOUT, TLS, NON_200, UNREACHABLE, OTHER = (
    "ok", "refused", "reset", "timeout", "tls", "non-200", "unreachable", "other",
)  # fmt: skip
OUTCOMES = (OK, REFUSED, RESET, TIMEOUT, TLS, NON_200, UNREACHABLE, OTHER)
MAX_IN_FLIGHT = 4000
_HEADER_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class Request:
    """One request: monotonic start and end, what came of it, who answered (if anyone)."""

    start: float
    end: float
    outcome: str
    node: str | None = None
    status: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == OK


def read_requests(path: Path) -> list[Request]:
    """The records a client run wrote to `path`."""
    found = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        found.append(
            Request(
                start=float(data["start"]),
                end=float(data["end"]),
                outcome=str(data["outcome"]),
                node=data.get("node"),
                status=data.get("status"),
                error=str(data.get("error", "")),
            )
        )
    return found


def classify(exc: BaseException) -> str:
    """The outcome class of a failed request's exception."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    # A connection cut under the client: an RST from a node that does not know it (ECMP moved
    # it), or the server going away mid-answer, during or after the handshake.
    cut = (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError, EOFError)
    if isinstance(exc, (*cut, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return RESET
    if isinstance(exc, ssl.SSLError):
        return TLS
    if isinstance(exc, OSError) and exc.errno is not None:
        return UNREACHABLE if exc.errno in _UNREACHABLE_ERRNOS else OTHER
    return OTHER


_UNREACHABLE_ERRNOS = frozenset({101, 113})  # ENETUNREACH, EHOSTUNREACH (no route at r1)


def parse_head(head: bytes) -> tuple[int, str | None, int]:
    """Status code, `X-Lab-Node` and Content-Length from a response head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise EOFError(f"not an HTTP response: {lines[0][:40]!r}")
    node, length = None, 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == NODE_HEADER:
            node = value.strip().decode(errors="replace")
        elif key == b"content-length":
            length = int(value.strip())
    return int(parts[1]), node, length


class Client:
    """Requests to one VIP at `rate` per second until `stop` is set."""

    def __init__(
        self, vip: str, context: ssl.SSLContext, *, rate: float, timeout: float,
        port: int = API_PORT,
    ) -> None:  # fmt: skip
        self.vip, self.context, self.rate, self.timeout = vip, context, rate, timeout
        self.port = port
        self.request = (
            f"GET /version HTTP/1.1\r\nHost: {API_NAME}:{API_PORT}\r\n"
            "User-Agent: announcer-bench\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ).encode()
        self.records: list[Request] = []

    async def run(self, stop: asyncio.Event) -> float:
        """Start requests on schedule until `stop`; wait for those in flight. The start time."""
        t0 = time.monotonic()
        print(f"started {t0:.6f}", flush=True)
        tasks: set[asyncio.Task[None]] = set()
        index = 0
        while not stop.is_set():
            due = t0 + index / self.rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
            if stop.is_set():
                break
            if len(tasks) < MAX_IN_FLIGHT:
                task = asyncio.create_task(self.one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            await asyncio.wait(tasks)
        return t0

    async def one(self) -> None:
        start = time.monotonic()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    self.vip, self.port, ssl=self.context, server_hostname=API_NAME,
                    limit=_HEADER_LIMIT,
                )  # fmt: skip
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, node, length = parse_head(head)
                await reader.readexactly(length)
            outcome = OK if status == 200 else NON_200
            self.records.append(Request(start, time.monotonic(), outcome, node, status))
        except (OSError, TimeoutError, EOFError, asyncio.IncompleteReadError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            self.records.append(Request(start, time.monotonic(), classify(exc), error=error))
        finally:
            if writer is not None:
                await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    # Closing is not part of the request: its end time is taken before. A peer that is gone
    # must not hold the client, so the TLS close gets a short grace, then the socket is cut.
    writer.close()
    try:
        async with asyncio.timeout(0.5):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (OSError, ssl.SSLError):
        pass  # the peer cut it first: nothing left to close


async def _main(args: argparse.Namespace) -> int:
    context = ssl.create_default_context(cafile=str(args.ca))
    client = Client(args.vip, context, rate=args.rate, timeout=args.timeout, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_input() -> None:
        if not os.read(sys.stdin.fileno(), 4096):  # EOF: the benchmark is done with us
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_input)
    await client.run(stop)
    with args.out.open("w") as out:
        for record in client.records:
            out.write(json.dumps(asdict(record)) + "\n")
    print(f"done {len(client.records)}", flush=True)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m announcer.lab.bench.client")
    parser.add_argument("--vip", required=True, help="the VIP address to connect to")
    parser.add_argument("--ca", type=Path, required=True, help="CA of the apiservers")
    parser.add_argument("--port", type=int, default=API_PORT, help="the apiservers' port")
    parser.add_argument("--rate", type=float, default=200.0, help="new connections per second")
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline per request (s)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())

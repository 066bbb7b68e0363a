from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from announcer.health import Health
from announcer.lifecycle import Lifecycle
from announcer.status import MAX_CLIENTS, MAX_PER_UID, StatusServer, StatusServerError
from announcer.status_client import (
    DaemonUnreachable,
    query,
    render_status,
    snapshot_from_json,
)
from announcer.status_protocol import (
    MAX_REQUEST,
    BfdStatus,
    ControlError,
    ExabgpStatus,
    JSONObject,
    NeighborStatus,
    ProbeStatus,
    ProtocolError,
    StatusSnapshot,
    TransitionRecord,
    VipStatus,
    parse_request,
)

NOW = 1_700_000_000.0

SNAPSHOT = StatusSnapshot(
    announced=True,
    health=Health.UP,
    health_since=NOW - 312,
    drained=False,
    lifecycle=Lifecycle.RUNNING,
    vips=(
        VipStatus(prefix="198.51.100.10/32", announced=True, reason="healthy"),
        VipStatus(prefix="2001:db8::10/128", announced=False, reason="no ipv6 neighbor"),
    ),
    neighbors=(NeighborStatus(address="192.0.2.1", state="up", since=NOW - 3600),),
    last_probe=ProbeStatus(ok=True, status=200, reason="ok", latency_ms=3.25, at=NOW - 1),
    exabgp=ExabgpStatus(pid=4242, restarts=1),
    transitions=(
        TransitionRecord(at=NOW - 315, old="down", new="rising", reason="ok"),
        TransitionRecord(at=NOW - 312, old="rising", new="up", reason="ok"),
    ),
    config_error=None,
)


class Control:
    """Records drain/undrain calls; `fail` makes the next call raise, `block` holds drains."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: Exception | None = None
        self.block: asyncio.Event | None = None

    async def drain(self, wait: bool) -> str:
        self.calls.append(f"drain wait={wait}")
        self._maybe_fail()
        if self.block is not None:
            await self.block.wait()
        return "drained" if wait else "draining"

    async def undrain(self) -> str:
        self.calls.append("undrain")
        self._maybe_fail()
        return "undrained"

    def _maybe_fail(self) -> None:
        fail, self.fail = self.fail, None
        if fail is not None:
            raise fail


@contextlib.asynccontextmanager
async def serving(
    path: Path, control: Control | None = None, **options: float
) -> AsyncIterator[StatusServer]:
    control = control or Control()
    server = StatusServer(
        path,
        mode=int(options.get("mode", 0o600)),
        group=None,
        snapshot=lambda: SNAPSHOT,
        on_drain=control.drain,
        on_undrain=control.undrain,
        read_timeout=options.get("read_timeout", 2.0),
        max_clients=int(options.get("max_clients", MAX_CLIENTS)),
        max_per_uid=int(options.get("max_per_uid", MAX_PER_UID)),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def ask(path: Path, request: JSONObject) -> JSONObject:
    return await asyncio.to_thread(query, path, request, timeout=5.0)


async def exchange(path: Path, raw: bytes, *, eof: bool = False) -> JSONObject:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(raw)
        if eof:
            writer.write_eof()
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b"", "server must close"
    finally:
        writer.close()
    answer = json.loads(line)
    assert isinstance(answer, dict)
    return answer


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def test_status_round_trips_through_a_real_socket(tmp_path: Path) -> None:
    path = tmp_path / "run" / "status.sock"

    async def body() -> None:
        async with serving(path):
            answer = await ask(path, {"op": "status"})
        assert answer["ok"] is True
        status = answer["status"]
        assert isinstance(status, dict)
        assert status["health"] == "up"
        assert status["lifecycle"] == "running"
        assert snapshot_from_json(status) == SNAPSHOT

    run(body)


def test_drain_and_undrain_reach_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    control = Control()

    async def body() -> None:
        async with serving(path, control):
            drained = await ask(path, {"op": "drain", "wait": True})
            draining = await ask(path, {"op": "drain"})
            undrained = await ask(path, {"op": "undrain"})
        assert drained == {"ok": True, "message": "drained"}
        assert draining == {"ok": True, "message": "draining"}
        assert undrained == {"ok": True, "message": "undrained"}

    run(body)
    assert control.calls == ["drain wait=True", "drain wait=False", "undrain"]


def test_handler_failures_become_error_answers(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    control = Control()

    async def body() -> None:
        async with serving(path, control):
            control.fail = ControlError("routes still announced after 5 s")
            refused = await ask(path, {"op": "drain", "wait": True})
            control.fail = RuntimeError("bug")
            broken = await ask(path, {"op": "undrain"})
            still = await ask(path, {"op": "status"})
        assert refused == {"ok": False, "error": "routes still announced after 5 s"}
        assert broken == {"ok": False, "error": "internal error; see the daemon's log"}
        assert still["ok"] is True

    run(body)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"hello\n", "not a JSON line"),
        (b"\xff\xfe\n", "not a JSON line"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"op": "reboot"}\n', 'unknown op "reboot" (expected status, drain or undrain)'),
        (b'{"op": 7}\n', "unknown op 7 (expected status, drain or undrain)"),
        (b'{"op": "drain", "wait": "yes"}\n', "drain: 'wait' must be true or false"),
        (b"[" * 100_000, f"line longer than {MAX_REQUEST} bytes"),
        (b'{"op": "status", "pad": "' + b"x" * MAX_REQUEST + b'"}\n', "line longer than"),
    ],
)
def test_bad_requests_get_an_error_and_the_server_lives_on(
    tmp_path: Path, raw: bytes, error: str
) -> None:
    path = tmp_path / "status.sock"

    async def body() -> None:
        async with serving(path):
            answer = await exchange(path, raw)
            after = await ask(path, {"op": "status"})
        assert answer["ok"] is False
        assert str(answer["error"]).startswith(error)
        assert after["ok"] is True

    run(body)


def test_a_request_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    request = b'{"op": "status"}'
    line = request + b" " * (MAX_REQUEST - len(request)) + b"\n"
    assert len(line) == MAX_REQUEST + 1

    async def body() -> None:
        async with serving(path):
            answer = await exchange(path, line)
        assert answer["ok"] is True

    run(body)


def test_a_request_without_newline_is_taken_at_end_of_input(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    async def body() -> None:
        async with serving(path):
            answer = await exchange(path, b'{"op": "status"}', eof=True)
            empty = await exchange(path, b"", eof=True)
        assert answer["ok"] is True
        assert empty == {"ok": False, "error": "empty request"}

    run(body)


def test_a_slow_client_is_cut_off_and_does_not_block_others(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    async def body() -> None:
        async with serving(path, read_timeout=0.3):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b'{"op": "sta')
            await writer.drain()
            # another client is served while the slow one holds its connection
            assert (await ask(path, {"op": "status"}))["ok"] is True
            line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
        assert json.loads(line) == {"ok": False, "error": "no complete request within 0.3 s"}

    run(body)


def test_connections_beyond_the_limit_are_told_busy(tmp_path: Path) -> None:
    """Busy only when every slot holds a request being answered (here a blocked drain)."""
    path = tmp_path / "status.sock"
    control = Control()

    async def body() -> None:
        async with serving(path, control, max_clients=1, read_timeout=5.0) as server:
            release = asyncio.Event()
            control.block = release
            held = asyncio.create_task(ask(path, {"op": "drain", "wait": True}))
            await _until(lambda: control.calls == ["drain wait=True"])
            busy = await exchange(path, b'{"op": "status"}\n')
            release.set()
            assert (await held)["ok"] is True
            assert server.connections <= 1
        assert busy == {"ok": False, "error": "busy: too many status connections"}

    run(body)


def test_idle_connections_never_lock_an_operator_out(tmp_path: Path) -> None:
    """More idle connections than the server has slots: a drain still gets in."""
    path = tmp_path / "status.sock"
    control = Control()

    async def body() -> None:
        async with serving(path, control, read_timeout=5.0) as server:
            idle = [await asyncio.open_unix_connection(path) for _ in range(2 * MAX_CLIENTS)]
            try:
                await _until(lambda: server.connections >= MAX_PER_UID)
                answer = await ask(path, {"op": "drain", "wait": False})
            finally:
                for _, writer in idle:
                    writer.close()
        assert answer == {"ok": True, "message": "draining"}
        assert control.calls == ["drain wait=False"]

    run(body)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_one_uid_cannot_take_every_slot() -> None:
    """A uid holding its limit of answered-but-slow requests is told busy; others are not."""
    control = Control()

    async def body(path: Path) -> None:
        async with serving(
            path, control, read_timeout=5.0, max_clients=4, max_per_uid=2, mode=0o666
        ):
            release = asyncio.Event()
            control.block = release
            held = [asyncio.create_task(ask(path, {"op": "drain", "wait": True})) for _ in "ab"]
            await _until(lambda: len(control.calls) == 2)
            own = await exchange(path, b'{"op": "status"}\n')
            other = await asyncio.to_thread(_ask_as_nobody, path)
            release.set()
            await asyncio.gather(*held)
        assert own == {"ok": False, "error": "busy: too many status connections"}
        assert other["ok"] is True

    with tempfile.TemporaryDirectory(prefix="announcer-status-") as scratch:
        Path(scratch).chmod(0o755)  # the socket's directory must be reachable by nobody
        run(lambda: body(Path(scratch) / "status.sock"))


def _ask_as_nobody(path: Path) -> JSONObject:
    """One status request from a process running as `nobody`."""
    ask = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(5)\n"
        "s.connect(sys.argv[1])\n"
        's.sendall(b\'{"op": "status"}\\n\')\n'
        "sys.stdout.buffer.write(s.makefile('rb').readline())\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", ask, str(path)],
        user=65534,
        group=65534,
        capture_output=True,
        timeout=10,
        check=True,
    )
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_a_repeated_key_is_an_error_not_the_last_value(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    control = Control()

    async def body() -> None:
        async with serving(path, control):
            answer = await exchange(path, b'{"op": "status", "op": "drain"}\n')
        assert answer == {"ok": False, "error": 'key "op" given twice'}
        assert control.calls == []

    run(body)


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_socket_gets_mode_and_group_and_is_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "status.sock"
    group = grp.getgrgid(os.getgid()).gr_name

    async def body() -> None:
        server = StatusServer(
            path,
            mode=0o660,
            group=group,
            snapshot=lambda: SNAPSHOT,
            on_drain=Control().drain,
            on_undrain=Control().undrain,
        )
        await server.start()
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == os.getgid()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
        await server.close()
        assert not path.exists()

    run(body)


def test_unknown_group_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    async def body() -> None:
        server = StatusServer(
            path,
            mode=0o660,
            group="no-such-group-announcer",
            snapshot=lambda: SNAPSHOT,
            on_drain=Control().drain,
            on_undrain=Control().undrain,
        )
        with pytest.raises(StatusServerError, match="group 'no-such-group-announcer'"):
            await server.start()
        assert not path.exists()

    run(body)


def test_a_socket_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path = shared / "run" / "status.sock"

    async def body() -> None:
        with pytest.raises(StatusServerError) as caught:
            async with serving(path):
                pass
        assert str(caught.value) == (
            f"status.socket: {path.parent}: {shared} (mode 0777) is writable by group or "
            "others; refusing to create the socket there"
        )
        assert not path.parent.exists()

    run(body)


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a dead daemon's leftover

    async def body() -> None:
        async with serving(path):
            assert (await ask(path, {"op": "status"}))["ok"] is True

    run(body)


def test_a_live_socket_or_a_regular_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    other = tmp_path / "file"
    other.write_text("keep me")

    async def body() -> None:
        async with serving(path):
            with pytest.raises(StatusServerError, match="another process is serving"):
                async with serving(path):
                    pass
            assert (await ask(path, {"op": "status"}))["ok"] is True
        with pytest.raises(StatusServerError, match="is not a socket"):
            async with serving(other):
                pass
        assert other.read_text() == "keep me"

    run(body)


def test_close_ends_open_connections(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    async def body() -> None:
        async with serving(path, read_timeout=30.0) as server:
            reader, writer = await asyncio.open_unix_connection(path)
            await _until(lambda: server.connections == 1)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    run(body)


def test_query_reports_a_missing_daemon(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnreachable, match=r"cannot reach the daemon at .*No such file"):
        query(tmp_path / "none.sock", {"op": "status"}, timeout=1.0)


def test_query_reports_a_silent_daemon(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen()
        with pytest.raises(DaemonUnreachable, match=r"no answer .* within 0\.2 s"):
            query(path, {"op": "status"}, timeout=0.2)


def test_query_reports_garbage_answers(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sock"

    async def body() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"<html>\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(answer, path=path)
        async with server:
            with pytest.raises(DaemonUnreachable, match=r"bad answer .*not a JSON line"):
                await ask(path, {"op": "status"})

    run(body)


def test_parse_request_reads_the_three_ops() -> None:
    assert type(parse_request(b'{"op": "status"}')).__name__ == "StatusRequest"
    drain = parse_request(b'{"op": "drain", "wait": true}')
    assert getattr(drain, "wait", None) is True
    assert type(parse_request(b'{"op": "undrain"}\n')).__name__ == "UndrainRequest"


def test_snapshot_from_json_names_the_bad_field() -> None:
    data = SNAPSHOT.to_json()
    with pytest.raises(ProtocolError, match="'health': unknown value 'sideways'"):
        snapshot_from_json({**data, "health": "sideways"})
    with pytest.raises(ProtocolError, match="'announced': expected bool"):
        snapshot_from_json({**data, "announced": 1})
    with pytest.raises(ProtocolError, match="'restarts': expected int"):
        snapshot_from_json({**data, "exabgp": {"pid": None, "restarts": True}})
    with pytest.raises(ProtocolError, match="'vips': expected a list"):
        snapshot_from_json({**data, "vips": None})


def test_render_status_of_an_announcing_node() -> None:
    text = render_status(SNAPSHOT.to_json(), now=NOW)
    lines = text.splitlines()
    assert lines[0] == "ANNOUNCING: 1 of 2 VIP(s) announced"
    assert "health:     up since " in text
    assert "(5m12s ago)" in text
    assert "last probe: ok, 3.2 ms, at " in text
    assert "  198.51.100.10/32     announced (healthy)" in lines
    assert "  2001:db8::10/128     not announced (no ipv6 neighbor)" in lines
    assert any(line.startswith("  192.0.2.1  up since ") and "1h0m ago" in line for line in lines)
    assert "exabgp:     pid 4242, 1 restart(s)" in lines
    assert lines[-1].endswith("rising -> up: ok")
    assert "config:" not in text


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ({"announced": False, "health": Health.DOWN}, "NOT ANNOUNCING (health down)"),
        ({"announced": False, "drained": True}, "NOT ANNOUNCING (drained)"),
        ({"announced": False, "lifecycle": Lifecycle.STOPPING}, "NOT ANNOUNCING (stopping)"),
    ],
)
def test_render_status_says_why_not(changes: dict[str, object], verdict: str) -> None:
    snapshot = replace(SNAPSHOT, **changes)  # type: ignore[arg-type]
    assert render_status(snapshot.to_json(), now=NOW).splitlines()[0] == verdict


def test_render_status_shows_missing_pieces() -> None:
    snapshot = replace(
        SNAPSHOT,
        last_probe=None,
        neighbors=(),
        transitions=(),
        exabgp=ExabgpStatus(pid=None, restarts=0),
        config_error="bgp.local_as: 'x' is not an AS number",
    )
    text = render_status(snapshot.to_json(), now=NOW)
    assert "last probe: none yet" in text
    assert "neighbors: none" in text
    assert "exabgp:     not running, 0 restart(s)" in text
    assert "config:     last reload failed: bgp.local_as: 'x' is not an AS number" in text


def test_render_status_aligns_neighbors_and_names_a_failed_probe() -> None:
    probe = ProbeStatus(ok=False, status=500, reason="http 500: etcd", latency_ms=4.0, at=NOW - 1)
    neighbors = (
        NeighborStatus(address="192.0.2.1", state="up", since=NOW - 60),
        NeighborStatus(address="2001:db8:1::1", state="down", since=NOW - 60),
    )
    snapshot = replace(SNAPSHOT, last_probe=probe, neighbors=neighbors)
    lines = render_status(snapshot.to_json(), now=NOW).splitlines()
    assert any(line.startswith("last probe: failed: http 500: etcd, 4.0 ms") for line in lines)
    assert any(line.startswith("  192.0.2.1      up since ") for line in lines)
    assert any(line.startswith("  2001:db8:1::1  down since ") for line in lines)


def test_render_status_shows_each_bfd_session_and_its_last_down() -> None:
    rows = (
        BfdStatus("192.0.2.1", "up", "none", NOW - 30, changes=4, last_down="detection_expired"),
        BfdStatus("2001:db8:1::1", "down", "none", None, changes=0, last_down=None),
    )
    snapshot = snapshot_from_json(replace(SNAPSHOT, bfd=rows).to_json())
    assert snapshot.bfd == rows
    lines = render_status(replace(SNAPSHOT, bfd=rows).to_json(), now=NOW).splitlines()
    assert "bfd:" in lines
    [up] = [line for line in lines if line.startswith("  192.0.2.1  up (diag none) since ")]
    assert up.endswith("(30s ago), 4 change(s), last down: detection_expired")
    assert "  2001:db8:1::1  down (diag none), 0 change(s)" in lines
    assert "bfd:" not in render_status(SNAPSHOT.to_json(), now=NOW).splitlines()


def test_render_status_does_not_take_the_word_of_a_killed_exabgp() -> None:
    exabgp = ExabgpStatus(pid=None, restarts=1, link="dead", killed_for="exabgp did not answer")
    snapshot = replace(SNAPSHOT, announced=False, exabgp=exabgp)
    lines = render_status(snapshot.to_json(), now=NOW).splitlines()
    assert lines[0] == "NOT ANNOUNCING (exabgp dead: exabgp did not answer)"
    assert "exabgp:     not running, 1 restart(s), dead (killed: exabgp did not answer)" in lines


def test_a_snapshot_without_the_bfd_and_link_fields_still_reads() -> None:
    data = SNAPSHOT.to_json()
    del data["bfd"]
    exabgp = data["exabgp"]
    assert isinstance(exabgp, dict)
    data["exabgp"] = {"pid": exabgp["pid"], "restarts": exabgp["restarts"]}
    snapshot = snapshot_from_json(data)
    assert (snapshot.bfd, snapshot.exabgp.link, snapshot.exabgp.killed_for) == (
        (), "connected", None,
    )  # fmt: skip


def test_the_protocol_imports_no_server_asyncio_or_yaml() -> None:
    """`announcer status` speaks the protocol; it must not pay for the daemon's server."""
    code = (
        "import sys, announcer.status_protocol, announcer.status_client\n"
        "heavy = ('asyncio', 'yaml', 'announcer.status', 'announcer.daemon')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == ""

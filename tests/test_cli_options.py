"""How the commands name the configuration file and the status socket, `status --json` when
there is no daemon, the exit status of usage errors, retries on a busy daemon, and the log
format taken from the configuration."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import announcer.daemon
from announcer import cli_files
from announcer.cli import EXIT_USAGE, main

MINIMAL = {
    "vips": ["198.51.100.10/32"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
    },
    "state_dir": "/var/lib/announcer",
}


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def write_config(tmp_path: Path, **extra: object) -> Path:
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump({**MINIMAL, **extra}))
    return file


@pytest.mark.parametrize("command", ["check-config", "render-exabgp"])
def test_config_option_and_deprecated_positional(tmp_path: Path, command: str) -> None:
    file = write_config(tmp_path)
    code, out, err = invoke(command, "--config", str(file))
    assert code == 0, err
    assert "deprecated" not in err
    old_code, old_out, old_err = invoke(command, str(file))
    assert (old_code, old_out) == (code, out)
    assert "warning: the FILE argument is deprecated: use --config FILE" in old_err
    other = tmp_path / "other.yaml"
    assert invoke(command, "--config", str(other), str(file))[0] == EXIT_USAGE


@pytest.mark.parametrize(
    "args",
    [
        ["check-config", "--no-such-option"],
        ["no-such-command"],
        ["status", "--socket"],
        ["run", "--log-format", "xml"],
        ["drain", "extra-argument"],
    ],
)
def test_usage_errors_exit_64_not_2(args: list[str]) -> None:
    code, _, err = invoke(*args)
    assert code == EXIT_USAGE == 64
    assert "Error:" in err


def test_an_invalid_configuration_still_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("vips: []\n")
    assert invoke("check-config", "--config", str(file))[0] == 2


def test_check_config_fails_on_a_host_without_the_loopback_interface(tmp_path: Path) -> None:
    file = write_config(tmp_path, loopback={"interface": "nosuch0"})
    code, _, err = invoke("check-config", "--config", str(file))
    assert code == 2
    assert "error: loopback.interface: 'nosuch0' is not an interface on this host" in err


def test_status_json_without_a_daemon_prints_one_json_object(tmp_path: Path) -> None:
    code, out, _ = invoke("status", "--json", "--socket", str(tmp_path / "none.sock"))
    assert code == 1
    answer = json.loads(out)
    assert set(answer) == {"error"}
    assert "none.sock" in answer["error"]


def test_status_json_with_an_invalid_config_prints_one_json_object(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("vips: [nope]\n")
    code, out, _ = invoke("status", "--json", "--config", str(file))
    assert code == 2
    assert "vips[0]" in json.loads(out)["error"]


class OneLineServer:
    """A Unix socket that answers each connection with the next of `answers` (a fake daemon:
    the client's only seam)."""

    def __init__(self, path: Path, answers: list[dict[str, object]]) -> None:
        self.path = path
        self.answers = answers
        self.requests: list[dict[str, object]] = []
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for answer in self.answers:
            connection, _ = self._server.accept()
            with connection, connection.makefile("rwb") as stream:
                self.requests.append(json.loads(stream.readline()))
                stream.write(json.dumps(answer).encode() + b"\n")

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=10)


@pytest.fixture
def busy_then_ok(tmp_path: Path) -> Iterator[OneLineServer]:
    busy = {"ok": False, "error": "busy: too many status connections"}
    server = OneLineServer(tmp_path / "s.sock", [busy, busy, {"ok": True, "message": "undrained"}])
    yield server
    server.close()


def test_undrain_retries_while_the_daemon_is_busy(busy_then_ok: OneLineServer) -> None:
    assert invoke("undrain", "--socket", str(busy_then_ok.path)) == (0, "undrained\n", "")
    assert busy_then_ok.requests == [{"op": "undrain"}] * 3


def test_status_drain_undrain_read_the_socket_from_config(tmp_path: Path) -> None:
    path = tmp_path / "custom.sock"
    file = write_config(tmp_path, status={"socket": str(path)})
    server = OneLineServer(path, [{"ok": True, "message": "draining"}])
    try:
        assert invoke("drain", "--config", str(file)) == (0, "draining\n", "")
    finally:
        server.close()
    assert server.requests == [{"op": "drain", "wait": False}]
    # --socket wins over the configuration
    code, out, _ = invoke(
        "status", "--json", "--config", str(file), "--socket", str(tmp_path / "x.sock")
    )
    assert code == 1 and "x.sock" in json.loads(out)["error"]


def test_status_without_config_uses_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANNOUNCER_SOCKET", str(tmp_path / "env.sock"))
    assert cli_files.resolve_socket(None, None) == tmp_path / "env.sock"
    assert cli_files.resolve_socket(tmp_path / "flag.sock", None) == tmp_path / "flag.sock"
    monkeypatch.delenv("ANNOUNCER_SOCKET")
    monkeypatch.setattr(cli_files, "DEFAULT_PATH", tmp_path / "absent.yaml")
    assert cli_files.resolve_socket(None, None) == cli_files.DEFAULT_SOCKET
    monkeypatch.setattr(cli_files, "DEFAULT_SOCKET", tmp_path / "not-there.sock")
    monkeypatch.setattr(
        cli_files, "DEFAULT_PATH", write_config(tmp_path, status={"socket": "/run/x/s.sock"})
    )
    assert cli_files.resolve_socket(None, None) == Path("/run/x/s.sock")


@pytest.fixture
def announcer_logging() -> Iterator[None]:
    root = logging.getLogger("announcer")
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.usefixtures("announcer_logging")
@pytest.mark.parametrize(("option", "json_lines"), [([], True), (["--log-format", "text"], False)])
def test_run_takes_the_log_format_from_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: list[str], json_lines: bool
) -> None:
    def fake_daemon(path: Path, config: object) -> int:
        logging.getLogger("announcer.test").info("started", extra={"event": "start"})
        return 0

    # The daemon is the one seam faked: what is tested is the handler `run` installs.
    monkeypatch.setattr(announcer.daemon, "run_daemon", fake_daemon)
    file = write_config(tmp_path, log={"format": "json"})
    code, _, err = invoke("run", "--config", str(file), *option)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if "started" in line]
    if json_lines:
        assert json.loads(line)["event"] == "start"
    else:
        assert line.startswith("<") or " INFO announcer.test: started" in line


def test_status_imports_nothing_heavy(tmp_path: Path) -> None:
    heavy = ["yaml", "pyroute2", "prometheus_client", "httpx", "announcer.daemon"]
    heavy += ["asyncio", "announcer.status"]  # the protocol without the server
    code = (
        "import sys\n"
        "from announcer.cli import main\n"
        f"sys.argv = ['announcer', 'status', '--json', '--socket', {str(tmp_path / 'x')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.splitlines()[-1] == "[]", result.stderr

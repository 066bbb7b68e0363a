"""Command line: a thin layer over the other modules. Exit codes come from the exceptions.

Exit codes: 0 success (`status`: this node announces), 1 failure (`status`: the daemon cannot
be reached), 2 invalid configuration (or a host that cannot run the daemon, for
`check-config`), 3 (`status` only) this node announces nothing, 64 usage error (an unknown
command or option, a bad option value: sysexits' EX_USAGE).

Every command that reads the configuration takes `--config FILE` (default
/etc/announcer/config.yaml); `check-config` and `render-exabgp` also accept the file as a
positional argument, deprecated. Heavy modules (PyYAML through the configuration loader, the
daemon, asyncio, netlink, the lab) are imported inside the commands that need them, so that
`announcer status`, run often by people and scripts, starts fast.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from announcer import __version__
from announcer.cli_files import (
    ConfigInvalid,
    config_file,
    config_option,
    config_path_of,
    load,
    resolve_socket,
    socket_options,
)
from announcer.config.errors import ConfigError, ConfigErrors
from announcer.config.model import LogFormat

if TYPE_CHECKING:
    from announcer.config.model import Config
    from announcer.status_protocol import JSONObject, JSONValue

EXIT_NOT_ANNOUNCING: Final = 3
EXIT_USAGE: Final = 64
QUERY_TIMEOUT: Final = 5.0
# drain --wait: drain.delay is at most 300 s, then the withdrawal is confirmed.
DRAIN_WAIT_TIMEOUT: Final = 330.0
# From a withdraw leaving the daemon to the route gone from the router's FIB: ExaBGP, the
# BGP UPDATE and the router's FIB update (~0.1 s measured in the lab, with room to spare).
CONVERGENCE_MARGIN: Final = 0.5


class _Commands(click.Group):
    """The daemon's commands, plus `lab`, imported only when asked for: the lab pulls in
    pyroute2, cryptography and jsonschema, which `announcer run` and `announcer status` (run
    often, by people and scripts) should not pay for in start-up time and memory."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *([_LAB] if _lab_installed() else [])])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == _LAB and _lab_installed():
            from announcer.lab.cli import lab

            return lab
        return super().get_command(ctx, cmd_name)

    # Usage errors come from parsing this group's arguments or a command's (in `invoke`):
    # give them their own exit code, not the 2 of an invalid configuration.
    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: object,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            _as_usage_error(error)
            raise

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            _as_usage_error(error)
            raise


_LAB = "lab"


def _as_usage_error(error: click.UsageError) -> None:
    # The instance keeps its class (and how click shows it); only its exit status changes.
    setattr(error, "exit_code", EXIT_USAGE)  # noqa: B010 - exit_code is a ClassVar for mypy


def _lab_installed() -> bool:
    # The lab is an extra (`announcer[lab]`); without it the daemon's commands still work.
    return all(importlib.util.find_spec(name) is not None for name in ("trustme", "jsonschema"))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="announcer")
def main() -> None:
    """Announce the Kubernetes apiserver VIP over BGP while the local apiserver is ready."""


@main.command("check-config")
@config_file
@click.option("--print", "print_", is_flag=True, help="Print the effective configuration.")
def check_config(config_path: Path | None, file: Path | None, print_: bool) -> None:
    """Validate the configuration: exit 0 if valid, 2 if not.

    Mistakes in the file, then what this host lacks for the daemon to work (no ExaBGP user,
    no loopback interface, an ExaBGP that user cannot run: also exit 2), then host warnings
    and `FILE: ok`, go to stderr; --print writes the effective configuration (every default
    filled in, no secrets) as YAML to stdout, ending with a comment that gives the least
    kube-apiserver --shutdown-delay-duration for it. FILE (positional) is the deprecated
    spelling of --config FILE.
    """
    from announcer.config import host_check, render_effective

    path = config_path_of(config_path, file)
    config = load(path)
    report = host_check(config)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.errors:
        raise ConfigInvalid(ConfigErrors(report.errors))
    if print_:
        click.echo(render_effective(config), nl=False)
        click.echo(shutdown_delay_comment(config), nl=False)
    click.echo(f"{path}: ok", err=True)


def min_shutdown_delay(config: Config) -> int:
    """The least kube-apiserver --shutdown-delay-duration (whole seconds) that keeps new
    connections off a stopping apiserver. The next probe starts within `interval` and takes at
    most `timeout` (its /readyz 500 and the /livez 200 of a planned shutdown share that
    deadline); it withdraws at once. Routers: ExaBGP and the router then converge
    (CONVERGENCE_MARGIN). This node's own clients reach the local apiserver through the VIP on
    lo until it goes: `drain.withdraw_wait` after the withdraw, at the next tick."""
    apiserver = config.apiserver
    routers = apiserver.interval + apiserver.timeout + CONVERGENCE_MARGIN
    local = apiserver.interval + apiserver.timeout + config.drain.withdraw_wait + apiserver.interval
    return math.ceil(round(max(routers, local), 6))


def shutdown_delay_comment(config: Config) -> str:
    """YAML comment lines stating `min_shutdown_delay` and how it follows from the config."""
    apiserver = config.apiserver
    return (
        "# kube-apiserver --shutdown-delay-duration: at least "
        f"{min_shutdown_delay(config)}s for this configuration\n"
        f"#   (routers: apiserver.interval {apiserver.interval:g} s + apiserver.timeout "
        f"{apiserver.timeout:g} s + {CONVERGENCE_MARGIN:g} s to converge;\n"
        f"#   this node's VIP on lo: 2 x interval + timeout + drain.withdraw_wait "
        f"{config.drain.withdraw_wait:g} s;\n"
        "#   rounded up; give routers slower to update their FIB more)\n"
    )


@main.command("config-schema")
def config_schema() -> None:
    """Print the JSON Schema of the configuration file.

    JSON Schema draft 2020-12, generated from the configuration model: the file the
    repository ships as config/announcer.schema.json and the install puts next to the
    configuration. Editors (yaml-language-server) and CI can check a file with it;
    check-config stays the authority (rules across keys, the files named, the host)."""
    from announcer.config.schema import schema_json

    click.echo(schema_json(), nl=False)


@main.command()
@config_option
@click.option(
    "--log-format",
    type=click.Choice([f.value for f in LogFormat]),
    default=None,
    help="text: one line per event (no timestamp under journald); json: one object a line  "
    "[default: log.format of the configuration, text]",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"]),
    default="info",
    show_default=True,
    help="debug also logs every probe.",
)
@click.pass_context
def run(ctx: click.Context, config_path: Path, log_format: str | None, log_level: str) -> None:
    """Run the daemon: probe the apiserver, announce the VIPs while it is ready.

    Exits 2 if the configuration is invalid, 1 if the daemon cannot start or a part of it
    fails (after withdrawing), 0 after a stop by SIGTERM or SIGINT.
    """
    import logging

    from announcer.daemon import run_daemon
    from announcer.logs import configure

    config = load(config_path)
    chosen = config.log.format if log_format is None else LogFormat(log_format)
    handler = configure(chosen, level=logging.getLevelName(log_level.upper()))
    try:
        code = run_daemon(config_path, config)
    finally:
        logging.getLogger("announcer").removeHandler(handler)
    ctx.exit(code)


@main.command()
@config_option
def cleanup(config_path: Path) -> None:
    """Take the configured VIPs off their interface once the daemon has exited (the unit's
    ExecStopPost=): after a crash or SIGKILL they would stay there. Removes nothing else."""
    from announcer.cleanup import remove_vips
    from announcer.loopback import LoopbackError

    config = load(config_path)
    try:
        removed = remove_vips(config)
    except LoopbackError as exc:
        raise click.ClickException(str(exc)) from exc
    for vip in removed:
        click.echo(f"removed {vip} from {config.loopback.interface}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@socket_options
@click.pass_context
def status(
    ctx: click.Context, as_json: bool, socket_path: Path | None, config_path: Path | None
) -> None:
    """Show whether this node announces and why: exit 0 if it does, 3 if it does not, 1 if
    the daemon cannot be reached (2 if --config names an invalid file).

    With --json, stdout is always one JSON object: the snapshot, or {"error": ...} when
    there is none."""
    try:
        path = resolve_socket(socket_path, config_path)
        snapshot = _snapshot(path)
        text = json.dumps(snapshot, indent=2) + "\n" if as_json else _render(path, snapshot)
    except click.ClickException as error:
        if as_json:
            click.echo(json.dumps({"error": error.format_message()}))
        raise
    click.echo(text, nl=False)
    ctx.exit(0 if snapshot.get("announced") is True else EXIT_NOT_ANNOUNCING)


def _snapshot(socket_path: Path) -> JSONObject:
    snapshot = _ask(socket_path, {"op": "status"}, timeout=QUERY_TIMEOUT).get("status")
    if not isinstance(snapshot, dict):
        raise click.ClickException(f"bad answer on {socket_path}: no status")
    return snapshot


def _render(socket_path: Path, snapshot: JSONObject) -> str:
    from announcer.status_client import ProtocolError, render_status

    try:
        return render_status(snapshot)
    except ProtocolError as exc:
        raise click.ClickException(f"bad answer on {socket_path}: {exc}") from exc


@main.command()
@click.option("--wait", is_flag=True, help="Return once the routes are withdrawn.")
@socket_options
def drain(wait: bool, socket_path: Path | None, config_path: Path | None) -> None:
    """Stop announcing this node, gracefully, until `undrain` (survives restarts).

    The routes are first re-announced with the graceful-shutdown community and/or a longer
    AS path for drain.delay seconds, then withdrawn. This is not `kubectl drain`: it moves
    the VIP's traffic off this node, not the pods."""
    timeout = DRAIN_WAIT_TIMEOUT if wait else QUERY_TIMEOUT
    path = resolve_socket(socket_path, config_path)
    answer = _ask(path, {"op": "drain", "wait": wait}, timeout=timeout)
    click.echo(str(answer.get("message", "")))


@main.command()
@socket_options
def undrain(socket_path: Path | None, config_path: Path | None) -> None:
    """Announce this node again (whenever its apiserver is ready)."""
    path = resolve_socket(socket_path, config_path)
    answer = _ask(path, {"op": "undrain"}, timeout=QUERY_TIMEOUT)
    click.echo(str(answer.get("message", "")))


@main.command("render-exabgp")
@config_file
def render_exabgp_command(config_path: Path | None, file: Path | None) -> None:
    """Print the ExaBGP configuration the daemon renders from the configuration, passwords
    redacted. FILE (positional) is the deprecated spelling of --config FILE."""
    from announcer.speaker import RenderError, render_exabgp

    file = config_path_of(config_path, file)
    config = load(file)
    try:
        click.echo(render_exabgp(config, redact=True), nl=False)
    except RenderError as exc:
        raise ConfigInvalid(
            ConfigError(str(file), f"cannot be rendered for exabgp: {exc}")
        ) from exc


def _ask(socket_path: Path, request: dict[str, JSONValue], *, timeout: float) -> JSONObject:
    from announcer.status_client import DaemonUnreachable, ask

    try:
        answer = ask(socket_path, request, timeout=timeout)
    except DaemonUnreachable as exc:
        raise click.ClickException(str(exc)) from exc
    if answer.get("ok") is not True:
        raise click.ClickException(f"the daemon says: {answer.get('error', 'failed')}")
    return answer

"""Command line: a thin layer over the other modules. Exit codes come from the exceptions.

Exit codes: 0 success (`status`: this node announces), 1 failure (`status`: the daemon cannot
be reached), 2 invalid configuration, 3 (`status` only) this node announces nothing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path
from typing import Final

import click

from announcer import __version__
from announcer.config import (
    DEFAULT_PATH,
    Config,
    ConfigError,
    StatusConfig,
    host_warnings,
    load_config,
    render_effective,
)
from announcer.logs import LogFormat, configure
from announcer.status_client import DaemonUnreachable, query, render_status
from announcer.status_protocol import JSONObject, JSONValue, ProtocolError

DEFAULT_SOCKET: Final = StatusConfig().socket
EXIT_NOT_ANNOUNCING: Final = 3
QUERY_TIMEOUT: Final = 5.0
# drain --wait: drain.delay is at most 300 s, then the withdrawal is confirmed.
DRAIN_WAIT_TIMEOUT: Final = 330.0
# From a withdraw leaving the daemon to the route gone from the router's FIB: ExaBGP, the
# BGP UPDATE and the router's FIB update (~0.1 s measured in the lab, with room to spare).
CONVERGENCE_MARGIN: Final = 0.5


class ConfigInvalid(click.ClickException):
    """The configuration has mistakes: one `error: PATH: ...` line each, exit status 2."""

    exit_code = 2

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error

    def show(self, file: object = None) -> None:
        for single in self.error.errors:
            click.echo(f"error: {single}", err=True)


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


_LAB = "lab"


def _lab_installed() -> bool:
    # The lab is an extra (`announcer[lab]`); without it the daemon's commands still work.
    return all(importlib.util.find_spec(name) is not None for name in ("trustme", "jsonschema"))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="announcer")
def main() -> None:
    """Announce the Kubernetes apiserver VIP over BGP while the local apiserver is ready."""


@main.command("check-config")
@click.argument(
    "file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, required=False
)
@click.option("--print", "print_", is_flag=True, help="Print the effective configuration.")
def check_config(file: Path, print_: bool) -> None:
    """Validate FILE (default /etc/announcer/config.yaml): exit 0 if valid, 2 if not.

    Mistakes, then host warnings and `FILE: ok`, go to stderr; --print writes the effective
    configuration (every default filled in, no secrets) as YAML to stdout, ending with a
    comment that gives the least kube-apiserver --shutdown-delay-duration for it.
    """
    try:
        config = load_config(file)
    except ConfigError as error:
        raise ConfigInvalid(error) from error
    for warning in host_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    if print_:
        click.echo(render_effective(config), nl=False)
        click.echo(shutdown_delay_comment(config), nl=False)
    click.echo(f"{file}: ok", err=True)


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
    """Print the JSON Schema of the configuration file (config/announcer.schema.json)."""
    from announcer.config.schema import schema_json

    click.echo(schema_json(), nl=False)


config_file = click.argument(
    "file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, required=False
)
socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SOCKET,
    envvar="ANNOUNCER_SOCKET",
    show_default=True,
    help="The daemon's status socket.",
)


def _load(file: Path) -> Config:
    try:
        return load_config(file)
    except ConfigError as error:
        raise ConfigInvalid(error) from error


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PATH,
    show_default=True,
    help="The configuration file.",
)
@click.option(
    "--log-format",
    type=click.Choice([f.value for f in LogFormat]),
    default=LogFormat.TEXT.value,
    show_default=True,
    help="text: one line per event (no timestamp under journald); json: one object a line.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"]),
    default="info",
    show_default=True,
    help="debug also logs every probe.",
)
@click.pass_context
def run(ctx: click.Context, config_path: Path, log_format: str, log_level: str) -> None:
    """Run the daemon: probe the apiserver, announce the VIPs while it is ready.

    Exits 2 if the configuration is invalid, 1 if the daemon cannot start or a part of it
    fails (after withdrawing), 0 after a stop by SIGTERM or SIGINT.
    """
    from announcer.daemon import run_daemon

    handler = configure(LogFormat(log_format), level=logging.getLevelName(log_level.upper()))
    try:
        config = _load(config_path)
        code = run_daemon(config_path, config)
    finally:
        logging.getLogger("announcer").removeHandler(handler)
    ctx.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@socket_option
@click.pass_context
def status(ctx: click.Context, as_json: bool, socket_path: Path) -> None:
    """Show whether this node announces and why: exit 0 if it does, 3 if it does not, 1 if
    the daemon cannot be reached."""
    snapshot = _ask(socket_path, {"op": "status"}, timeout=QUERY_TIMEOUT).get("status")
    if not isinstance(snapshot, dict):
        raise click.ClickException(f"bad answer on {socket_path}: no status")
    try:
        text = json.dumps(snapshot, indent=2) + "\n" if as_json else render_status(snapshot)
    except ProtocolError as exc:
        raise click.ClickException(f"bad answer on {socket_path}: {exc}") from exc
    click.echo(text, nl=False)
    ctx.exit(0 if snapshot.get("announced") is True else EXIT_NOT_ANNOUNCING)


@main.command()
@click.option("--wait", is_flag=True, help="Return once the routes are withdrawn.")
@socket_option
def drain(wait: bool, socket_path: Path) -> None:
    """Stop announcing this node, gracefully, until `undrain` (survives restarts).

    The routes are first re-announced with the graceful-shutdown community and/or a longer
    AS path for drain.delay seconds, then withdrawn."""
    timeout = DRAIN_WAIT_TIMEOUT if wait else QUERY_TIMEOUT
    answer = _ask(socket_path, {"op": "drain", "wait": wait}, timeout=timeout)
    click.echo(str(answer.get("message", "")))


@main.command()
@socket_option
def undrain(socket_path: Path) -> None:
    """Announce this node again (whenever its apiserver is ready)."""
    answer = _ask(socket_path, {"op": "undrain"}, timeout=QUERY_TIMEOUT)
    click.echo(str(answer.get("message", "")))


@main.command("render-exabgp")
@config_file
def render_exabgp_command(file: Path) -> None:
    """Print the ExaBGP configuration the daemon renders from FILE, passwords redacted."""
    from announcer.speaker import RenderError, render_exabgp

    config = _load(file)
    try:
        click.echo(render_exabgp(config, redact=True), nl=False)
    except RenderError as exc:
        raise ConfigInvalid(
            ConfigError(str(file), f"cannot be rendered for exabgp: {exc}")
        ) from exc


def _ask(socket_path: Path, request: dict[str, JSONValue], *, timeout: float) -> JSONObject:
    try:
        answer = query(socket_path, request, timeout=timeout)
    except DaemonUnreachable as exc:
        raise click.ClickException(str(exc)) from exc
    if answer.get("ok") is not True:
        raise click.ClickException(f"the daemon says: {answer.get('error', 'failed')}")
    return answer

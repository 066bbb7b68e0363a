"""How the commands name their files: `--config FILE` (and the deprecated positional FILE it
replaces), the daemon's status socket (`--socket`, else `status.socket` of `--config`, else
`$ANNOUNCER_SOCKET`, else the default socket or, when nothing is there, `status.socket` of the
default configuration file), and `ConfigInvalid`, the exit-2 error of a bad configuration.

The configuration is read here only when a command needs it: PyYAML and the parser are
imported inside the functions, so `announcer status` without `--config` never loads them.

Must not: talk to the daemon, or decide a command's exit status other than ConfigInvalid's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import click

from announcer.config.errors import ConfigError
from announcer.config.model import DEFAULT_PATH, StatusConfig

if TYPE_CHECKING:
    from announcer.config.model import Config

DEFAULT_SOCKET: Final = StatusConfig().socket
SOCKET_ENV: Final = "ANNOUNCER_SOCKET"
F = TypeVar("F", bound=Callable[..., object])


class ConfigInvalid(click.ClickException):
    """The configuration has mistakes: one `error: PATH: ...` line each, exit status 2."""

    exit_code = 2

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error

    def show(self, file: object = None) -> None:
        for single in self.error.errors:
            click.echo(f"error: {single}", err=True)


def config_option(command: F) -> F:
    """`--config FILE` (default: the default configuration file), for `run` and `cleanup`."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_PATH,
        show_default=True,
        help="The configuration file.",
    )(command)


def config_file(command: F) -> F:
    """`--config FILE`, and the deprecated positional FILE it replaces."""
    command = click.argument(
        "file", type=click.Path(dir_okay=False, path_type=Path), required=False
    )(command)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"The configuration file  [default: {DEFAULT_PATH}]",
    )(command)


def config_path_of(config_path: Path | None, file: Path | None) -> Path:
    if file is None:
        return DEFAULT_PATH if config_path is None else config_path
    if config_path is not None and config_path != file:
        raise click.UsageError(f"two configuration files: --config {config_path} and {file}")
    click.echo("warning: the FILE argument is deprecated: use --config FILE", err=True)
    return file


def load(file: Path) -> Config:
    from announcer.config import load_config

    try:
        return load_config(file)
    except ConfigError as error:
        raise ConfigInvalid(error) from error


def socket_options(command: F) -> F:
    """`--socket PATH` and `--config FILE`, for the commands that talk to the daemon."""
    command = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Use status.socket from this configuration file.",
    )(command)
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=(
            f"The daemon's status socket  [default: status.socket of --config, else "
            f"${SOCKET_ENV}, else {DEFAULT_SOCKET}, else status.socket of {DEFAULT_PATH}]"
        ),
    )(command)


def resolve_socket(socket_path: Path | None, config_path: Path | None) -> Path:
    """--socket; else status.socket of --config; else $ANNOUNCER_SOCKET; else the default
    socket, or (when nothing is there) status.socket of the default configuration file."""
    if socket_path is not None:
        return socket_path
    if config_path is not None:
        return status_socket(config_path)
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    if not DEFAULT_SOCKET.exists() and DEFAULT_PATH.exists():
        return status_socket(DEFAULT_PATH)
    return DEFAULT_SOCKET


def status_socket(file: Path) -> Path:
    # Only the document's own rules: a missing password file does not hide the socket.
    from announcer.config import parse_config, read_document

    try:
        return parse_config(read_document(file)).status.socket
    except ConfigError as error:
        raise ConfigInvalid(error) from error

"""Command line: a thin layer over the other modules. Exit codes come from the exceptions."""

from __future__ import annotations

from pathlib import Path

import click

from announcer import __version__
from announcer.config import DEFAULT_PATH, ConfigError, host_warnings, load_config, render_effective


class ConfigInvalid(click.ClickException):
    """The configuration has mistakes: one `error: PATH: ...` line each, exit status 2."""

    exit_code = 2

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error

    def show(self, file: object = None) -> None:
        for single in self.error.errors:
            click.echo(f"error: {single}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    configuration (every default filled in, no secrets) as YAML to stdout.
    """
    try:
        config = load_config(file)
    except ConfigError as error:
        raise ConfigInvalid(error) from error
    for warning in host_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    if print_:
        click.echo(render_effective(config), nl=False)
    click.echo(f"{file}: ok", err=True)


def _add_lab() -> None:
    # The lab has extra dependencies (trustme, jsonschema); keep the daemon importable without.
    try:
        from announcer.lab.cli import lab
    except ImportError:  # pragma: no cover - depends on the install
        return
    main.add_command(lab)


_add_lab()

"""Command line: a thin layer over the other modules. Exit codes come from the exceptions."""

from __future__ import annotations

import click

from announcer import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="announcer")
def main() -> None:
    """Announce the Kubernetes apiserver VIP over BGP while the local apiserver is ready."""


def _add_lab() -> None:
    # The lab has extra dependencies (trustme, jsonschema); keep the daemon importable without.
    try:
        from announcer.lab.cli import lab
    except ImportError:  # pragma: no cover - depends on the install
        return
    main.add_command(lab)


_add_lab()

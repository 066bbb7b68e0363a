"""The announcer(1) manual page, written in roff from the command line's own help: every
command's usage, help text and options come from click, so the page cannot drift from
`announcer COMMAND --help`. `scripts/build-man` writes it; the Debian package installs it.

The output is reproducible (no date): the same code gives the same page.

Must not: run any command, or describe anything the CLI does not define, except the few fixed
sections (exit status, files, environment) that restate `announcer.cli`'s constants.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from announcer import __version__
from announcer.cli import EXIT_NOT_ANNOUNCING, EXIT_USAGE
from announcer.cli import main as cli_main
from announcer.cli_files import DEFAULT_SOCKET, SOCKET_ENV
from announcer.config.model import DEFAULT_PATH

# The lab is a development tool shipped as an extra; it has its own --help.
SKIPPED = frozenset({"lab"})


def escape(text: str) -> str:
    """Text safe in roff: backslashes, minus signs, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [f"\\&{line}" if line.startswith((".", "'")) else line for line in text.split("\n")]
    return "\n".join(lines)


def _paragraphs(help_text: str) -> Iterator[str]:
    for block in help_text.strip().split("\n\n"):
        yield ".PP"
        yield escape(" ".join(block.split()))


def _options(command: click.Command, ctx: click.Context) -> Iterator[str]:
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):  # arguments are in the usage line
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        yield ".TP"
        yield f"\\fB{escape(names)}\\fR"
        yield escape(" ".join(text.split()))


def _command(name: str, command: click.Command, parent: click.Context) -> Iterator[str]:
    ctx = click.Context(command, info_name=name, parent=parent, **cli_main.context_settings)
    usage = " ".join(command.collect_usage_pieces(ctx))
    yield f'.SS "{escape(ctx.command_path)} {escape(usage)}"'
    yield from _paragraphs(command.help or "")
    yield from _options(command, ctx)


def _fixed_sections() -> Iterator[str]:
    yield ".SH EXIT STATUS"
    for code, meaning in (
        (0, "success; status: this node announces"),
        (1, "failure; status, drain, undrain: the daemon cannot be reached"),
        (2, "invalid configuration (check-config: also a host that cannot run the daemon)"),
        (EXIT_NOT_ANNOUNCING, "status: this node announces nothing"),
        (EXIT_USAGE, "usage error: an unknown command or option, a bad option value"),
    ):
        yield ".TP"
        yield f"\\fB{code}\\fR"
        yield escape(meaning)
    yield ".SH FILES"
    for path, meaning in (
        (str(DEFAULT_PATH), "the configuration (--config)"),
        (str(DEFAULT_SOCKET), "the status socket (status.socket)"),
        ("/var/lib/announcer", "the drain state and ExaBGP's rendered configuration"),
    ):
        yield ".TP"
        yield f"\\fI{escape(path)}\\fR"
        yield escape(meaning)
    yield ".SH ENVIRONMENT"
    yield ".TP"
    yield f"\\fB{SOCKET_ENV}\\fR"
    yield escape("the status socket for status, drain and undrain, below --socket and --config")


def render() -> str:
    """The whole page."""
    root = click.Context(cli_main, info_name="announcer", **cli_main.context_settings)
    lines = [
        f'.TH ANNOUNCER 1 "" "announcer {escape(__version__)}" "User Commands"',
        ".SH NAME",
        f"announcer \\- {escape(cli_main.help or '').rstrip('.')}",
        ".SH SYNOPSIS",
        "\\fBannouncer\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH OPTIONS",
        *_options(cli_main, root),
        ".SH COMMANDS",
    ]
    for name in cli_main.list_commands(root):
        command = cli_main.get_command(root, name)
        if name not in SKIPPED and command is not None and not command.hidden:
            lines += _command(name, command, root)
    lines += _fixed_sections()
    lines += [".SH SEE ALSO", "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBkubeadm\\fR(1)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()

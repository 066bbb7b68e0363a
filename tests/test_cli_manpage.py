"""The manual page: scripts/build-man writes it from the CLI's own help, it names every
command and option, and groff formats it without a warning."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click
import pytest

from announcer.cli import main
from announcer.manpage import SKIPPED, escape, render

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("man") / "announcer.1"
    result = subprocess.run(
        ["bash", ROOT / "scripts" / "build-man", output],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return output.read_text()


def test_the_script_writes_what_render_gives(page: str) -> None:
    assert page == render()
    assert page.startswith(".TH ANNOUNCER 1 ")


def test_every_command_and_option_is_in_the_page(page: str) -> None:
    ctx = click.Context(main, info_name="announcer")
    commands = [name for name in main.list_commands(ctx) if name not in SKIPPED]
    assert {"check-config", "config-schema", "run", "status", "drain", "undrain"} <= set(commands)
    for name in commands:
        command = main.get_command(ctx, name)
        assert command is not None
        assert f'.SS "announcer {escape(name)} ' in page, name
        for param in command.params:
            if isinstance(param, click.Option):
                for option in param.opts:
                    assert escape(option) in page, f"{name} {option}"
    assert ".SH EXIT STATUS" in page and "\\fB64\\fR" in page


def test_groff_formats_the_page_without_warnings(page: str, tmp_path: Path) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z"],
        input=page,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_escape_keeps_roff_requests_out_of_the_text() -> None:
    assert escape(".SH x\n'y\n--config a\\b") == "\\&.SH x\n\\&'y\n\\-\\-config a\\eb"

"""Every command and option of the CLI is documented in the README, and --help works."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vultus.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


COMMANDS = list(_commands(cli))


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_and_its_options_are_in_the_readme(path, command):
    heading = "vultus " + " ".join(path)
    assert f"### `{heading}" in README, f"README has no reference section for `{heading}`"
    section = README.split(f"### `{heading}", 1)[1].split("\n### ", 1)[0]
    for param in command.params:
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("--") and opt != "--help":
                assert opt in section, f"`{heading}` option {opt} is not in its README section"
    help_text = CliRunner().invoke(cli, [*path, "--help"]).output
    assert "Usage: " in help_text and (command.help or "").split("\n")[0][:30] in help_text


def test_global_options_are_in_the_readme():
    for param in cli.params:
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                assert f"`{opt}" in README, f"global option {opt} is not in the README"


def test_readme_gives_the_two_commands():
    assert "./scripts/quickstart.sh PATH/TO/PHOTOS" in README
    assert "./scripts/test.sh" in README
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in ci

"""The `vultus` command line: one module per group of commands, registered on the group in :mod:`.base`."""

from __future__ import annotations

from . import commands, migrate, people, rights, sources  # noqa: F401 - importing them registers their commands on `cli`
from .base import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point of the `vultus` console script."""
    cli(prog_name="vultus")

"""Helpers shared by the command groups: logging set-up, errors, --config."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

from mamori import config as config_mod
from mamori.errors import MamoriError
from mamori.logs import setup_logging

__all__ = ["config_option", "fail", "load_config", "progress", "setup_logging"]


def fail(e: Exception) -> NoReturn:
    click.echo(f"mamori: error: {e}", err=True)
    sys.exit(2)


config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="TOML configuration file.",
)


def load_config(path: str, resolver: bool = False) -> config_mod.Config:
    """Load a config or exit 2 with the file:line: key: message error.

    Each section is required only by the command that uses it: *resolver*
    True (``mamori serve``) also requires ``[upstream] servers``; every other
    command (``check``, ``zones``, ``feeds``, ``pdns``, ``keys``, ``web`` ...)
    runs without.
    """
    try:
        return config_mod.load(path, resolver=resolver)
    except MamoriError as e:
        fail(e)


@contextmanager
def progress() -> Iterator[object]:
    """A rich progress bar on a terminal; one line per finished step otherwise."""
    if not sys.stderr.isatty():

        def report(what: str, done: int, total: int | None) -> None:
            if total is not None and done >= total:
                click.echo(f"  {what}: {done:,} done", err=True)

        yield report
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        tasks: dict[str, object] = {}

        def draw(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)  # type: ignore[arg-type]

        yield draw

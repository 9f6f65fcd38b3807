"""Helpers shared by the command groups: logging set-up, errors, --config."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

from mamori import config as config_mod
from mamori.errors import MamoriError


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(e: Exception) -> NoReturn:
    click.echo(f"mamori: error: {e}", err=True)
    sys.exit(2)


config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="TOML configuration file.",
)


def _load_config(path: str) -> config_mod.Config:
    """Load a config or exit 2 with the file:line: key: message error."""
    try:
        return config_mod.load(path)
    except MamoriError as e:
        _fail(e)

"""The reference pages are complete: every config key, metric and CLI command is documented,
and README.md lists every how-to and reference page.

A key, a metric or a command added to the code without a line in docs/reference/
fails here, and the failure names what is missing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
from prometheus_client.core import CounterMetricFamily

from mamori.cli import cli
from mamori.config import alerts as alert_keys
from mamori.config import brands as brand_keys
from mamori.config import feeds as feed_keys
from mamori.config import keys as core_keys
from mamori.web import metrics

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"
CONFIG_MD = REFERENCE / "config.md"
METRICS_MD = REFERENCE / "alerts-metrics.md"
CLI_MD = REFERENCE / "cli.md"


# --------------------------------------------------------------------------- config
def config_keys() -> set[tuple[str, str]]:
    """Every (section, key) the loader accepts: the core sections and the [[table]] ones."""
    return (
        set(core_keys.CONVERTERS)
        | set(feed_keys.CONVERTERS)
        | set(alert_keys.CONVERTERS)
        | set(brand_keys.CONVERTERS)
    )


def config_sections(text: str) -> dict[str, str]:
    """Section name -> the text under every ``##`` heading that names it (`[x]` or `[[x]]`)."""
    out: dict[str, str] = {}
    for block in re.split(r"^(?=## )", text, flags=re.MULTILINE):
        heading, _, body = block.partition("\n")
        if not heading.startswith("## "):
            continue
        for name in re.findall(r"`\[\[?([a-z_]+)\]\]?`", heading):
            out[name] = out.get(name, "") + body
    return out


def test_every_config_key_is_documented_in_its_section() -> None:
    sections = config_sections(CONFIG_MD.read_text(encoding="utf-8"))
    missing = sorted(
        f"{section}.{key}"
        for section, key in config_keys()
        if f"`{key}`" not in sections.get(section, "")
    )
    assert not missing, f"{CONFIG_MD.name} does not document: {', '.join(missing)}"


def test_config_sections_are_found() -> None:
    """The key check above reads the page by its headings: they must be there to read."""
    sections = config_sections(CONFIG_MD.read_text(encoding="utf-8"))
    wanted = {section for section, _key in config_keys()}
    assert wanted <= sections.keys(), f"no heading for {sorted(wanted - sections.keys())}"


# -------------------------------------------------------------------------- metrics
def exported_metric_names() -> set[str]:
    """Metric family names as Prometheus shows them (counters with ``_total``).

    Every ``mamori_*`` string in web/metrics.py is a family name; one passed as the
    first argument of a counter family gets the ``_total`` suffix prometheus_client adds.
    """
    tree = ast.parse(Path(metrics.__file__).read_text(encoding="utf-8"))
    counters = {name for name, obj in vars(metrics).items() if obj is CounterMetricFamily}
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"mamori_[a-z0-9_]+", node.value)
        ):
            names.add(node.value)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in counters
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            name = node.args[0].value
            names.discard(name)
            names.add(name.removesuffix("_total") + "_total")
    return names


def test_metric_names_are_read_from_the_source() -> None:
    names = exported_metric_names()
    # one of each way a family is declared: a counter call, a gauge call, the STAT_COUNTERS table
    assert {"mamori_worker_restarts_total", "mamori_workers", "mamori_queries_total"} <= names
    assert "mamori_worker_restarts" not in names


def test_every_metric_is_documented() -> None:
    text = METRICS_MD.read_text(encoding="utf-8")
    missing = sorted(
        name
        for name in exported_metric_names()
        if not re.search(rf"(?<![a-z0-9_]){name}(?![a-z0-9_])", text)
    )
    assert not missing, f"{METRICS_MD.name} does not document: {', '.join(missing)}"


# ------------------------------------------------------------------------------ CLI
def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    """``"zones serve"`` ... for every command and subcommand under *group*."""
    out: list[str] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        out.append(" ".join(path))
        if isinstance(command, click.Group):
            out += command_paths(command, path)
    return out


def test_every_cli_command_is_documented() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    paths = command_paths(cli)
    assert "zones serve" in paths and "pdns query" in paths
    missing = [
        f"mamori {path}"
        for path in paths
        if not re.search(rf"\bmamori {re.escape(path)}(?![\w-])", text)
    ]
    assert not missing, f"{CLI_MD.name} does not document: {', '.join(missing)}"


# --------------------------------------------------------------------------- README
def test_readme_lists_every_howto_and_reference_page() -> None:
    docs = REFERENCE.parent
    readme = (docs.parent / "README.md").read_text(encoding="utf-8")
    listed = readme.partition("## Documentation")[2]
    pages = sorted([*docs.glob("howto/*.md"), *docs.glob("reference/*.md")])
    assert len(pages) > 20 and "watch-your-brand.md" in {p.name for p in pages}
    missing = [p.relative_to(docs.parent).as_posix() for p in pages]
    missing = [m for m in missing if f"`{m}`" not in listed]
    assert not missing, f"README.md's documentation list lacks: {', '.join(missing)}"

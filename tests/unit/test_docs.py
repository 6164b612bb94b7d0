"""The user docs against the code: every key, command, option, route, reason and link is there."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import click
import pytest
from pydantic import BaseModel

from agent.cli import main
from agent.config import checks, model
from agent.probes.board import Scoreboard
from agent.probes.result import Reason
from agent.server.app import make_app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text("utf-8")


def _config_models() -> list[type[BaseModel]]:
    """`agent`, `telemetry`, `telemetry.otlp` and every model with fields in checks.py."""
    found: list[type[BaseModel]] = [
        model.AgentSettings,
        model.TelemetrySettings,
        model.OtlpSettings,
    ]
    for _, value in inspect.getmembers(checks, inspect.isclass):
        if (
            issubclass(value, BaseModel)
            and value.__module__ == checks.__name__
            and value.model_fields
        ):
            found.append(value)
    return found


def test_config_models_found() -> None:
    """The model discovery sees the agent, telemetry, OTLP and every check-kind class."""
    names = {m.__name__ for m in _config_models()}
    expected = {
        "AgentSettings",
        "TelemetrySettings",
        "OtlpSettings",
        "CheckBase",
        "JsonFieldExpectation",
    }
    expected |= {kind.__name__ for kind in get_args(get_args(checks.CheckConfig)[0])}
    assert expected <= names


@pytest.mark.parametrize("config_model", _config_models(), ids=lambda m: m.__name__)
def test_every_config_key_documented(config_model: type[BaseModel]) -> None:
    """Every field of the config model appears in docs/configuration.md as `key`."""
    page = _page("configuration.md")
    missing = [key for key in config_model.model_fields if f"`{key}`" not in page]
    assert not missing, f"{config_model.__name__} keys missing from configuration.md: {missing}"


def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def _in_code(option: str, page: str) -> bool:
    """Whether `option` starts a code span of `page` (`--json` or `--config FILE`)."""
    return re.search(r"`" + re.escape(option) + r"[` ]", page) is not None


def test_every_cli_command_and_option_documented() -> None:
    """Every command of `agent.cli.main` and each of its options appears in docs/cli.md."""
    page = _page("cli.md")
    missing: list[str] = []
    for path, command in _commands(main, "vigil"):
        if path not in page:
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Argument):
                continue
            missing += [f"{path} {opt}" for opt in param.opts if not _in_code(opt, page)]
    for param in main.params:
        missing += [f"vigil {opt}" for opt in param.opts if not _in_code(opt, page)]
    assert not missing, f"missing from cli.md: {missing}"


def test_every_route_documented() -> None:
    """Every route registered by `make_app` appears in docs/http-api.md."""
    app = make_app(Scoreboard([]), lambda: b"", 0.0)
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    page = _page("http-api.md")
    assert routes
    missing = sorted(r for r in routes if f"`{r}`" not in page)
    assert not missing, f"routes missing from http-api.md: {missing}"


def test_every_reason_documented() -> None:
    """Every `Reason` value appears in docs/configuration.md as `reason`."""
    page = _page("configuration.md")
    missing = [r.value for r in Reason if f"`{r.value}`" not in page]
    assert not missing, f"reasons missing from configuration.md: {missing}"


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _relative_links(path: Path) -> list[tuple[Path, str]]:
    """(file, anchor) of every relative link in `path`; absolute URLs are left out."""
    links = []
    for target in _LINK.findall(path.read_text("utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        file, _, anchor = target.partition("#")
        links.append((path.parent / file if file else path, anchor))
    return links


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (duplicates numbered)."""
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    """Every relative Markdown link in the page points at an existing file."""
    broken = [str(file) for file, _ in _relative_links(path) if not file.exists()]
    assert not broken, f"{path.name} links to missing files: {broken}"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_link_anchors_resolve(path: Path) -> None:
    """Every `#anchor` of a relative link to a Markdown page names one of its headings."""
    broken = [
        f"{file.name}#{anchor}"
        for file, anchor in _relative_links(path)
        if anchor and file.suffix == ".md" and file.exists() and anchor not in _anchors(file)
    ]
    assert not broken, f"{path.name} links to missing anchors: {broken}"


def test_readme_links_every_page() -> None:
    """README.md links to every page in docs/."""
    readme = (ROOT / "README.md").read_text("utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not missing, f"README.md does not link: {missing}"

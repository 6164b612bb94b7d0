"""The user docs against the code: every key, command, option, route, reason and link is there."""

from __future__ import annotations

import enum
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
from agent.config.backup import BackupSettings
from agent.degradation import flags, policy
from agent.degradation.engine import DegradationEngine
from agent.degradation.levels import Level
from agent.degradation.sqlitestore import SqliteStateStore
from agent.probes.board import Scoreboard
from agent.probes.result import Reason
from agent.server.app import make_app
from agent.server.degradation_api import DegradationApi
from agent.server.requests import EvaluateRequest, PinRequest, UnpinRequest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text("utf-8")


def _nested_models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """`root` and every model its fields hold, however deep (`degradation.rules[]`, ...)."""
    found: list[type[BaseModel]] = []
    pending = [root]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        for field in current.model_fields.values():
            stack = [field.annotation]
            while stack:
                annotation = stack.pop()
                if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
                    pending.append(annotation)
                stack.extend(get_args(annotation))
    return found


def _config_models() -> list[type[BaseModel]]:
    """`agent`, `telemetry`, `telemetry.otlp`, `degradation` with everything under it, and every
    model with fields in checks.py."""
    found: list[type[BaseModel]] = [
        *_nested_models(model.AgentSettings),
        model.TelemetrySettings,
        model.OtlpSettings,
        *_nested_models(model.DegradationSettings),
        *_nested_models(BackupSettings),
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
        "DegradationSettings",
        "RuleSettings",
        "WebhookSettings",
        "RedisStoreSettings",
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


def test_every_cli_group_walked() -> None:
    """The command walk reaches the admin API clients, so the test above covers them too."""
    paths = {path for path, _ in _commands(main, "vigil")}
    expected = {
        "vigil degradation status",
        "vigil degradation pin",
        "vigil degradation unpin",
        "vigil degradation history",
        "vigil flags list",
        "vigil flags set",
        "vigil flags evaluate",
    }
    assert expected <= paths


def _routes(tmp_path: Path) -> set[str]:
    """Every route of the agent's app with the degradation API registered."""
    app = make_app(Scoreboard([]), lambda: b"", 0.0)
    settings = model.DegradationSettings()
    engine = DegradationEngine(settings, SqliteStateStore.at(tmp_path / "vigil.db"))
    DegradationApi(settings, engine, flags.Flags()).register(app)
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_every_route_documented(tmp_path: Path) -> None:
    """Every route of `make_app` and of the degradation API appears in docs/http-api.md."""
    routes = _routes(tmp_path)
    page = _page("http-api.md")
    assert {"/health", "/webhooks/alertmanager", "/api/v1/flags/{key}/evaluate"} <= routes
    missing = sorted(r for r in routes if f"`{r}`" not in page)
    assert not missing, f"routes missing from http-api.md: {missing}"


@pytest.mark.parametrize(
    "body_model", [PinRequest, UnpinRequest, EvaluateRequest], ids=lambda m: m.__name__
)
def test_every_request_field_documented(body_model: type[BaseModel]) -> None:
    """Every field of an admin API request body appears in docs/http-api.md as `field`."""
    page = _page("http-api.md")
    missing = [key for key in body_model.model_fields if f"`{key}`" not in page]
    assert not missing, f"{body_model.__name__} fields missing from http-api.md: {missing}"


@pytest.mark.parametrize(
    "flag_model", _nested_models(flags.FlagDefinition), ids=lambda m: m.__name__
)
def test_every_flag_field_documented(flag_model: type[BaseModel]) -> None:
    """Every field of a flag definition (targeting, variants, dependencies) is in degradation.md."""
    page = _page("degradation.md")
    missing = [key for key in flag_model.model_fields if f"`{key}`" not in page]
    assert not missing, f"{flag_model.__name__} fields missing from degradation.md: {missing}"


@pytest.mark.parametrize(
    "values",
    [
        Level,
        policy.Cause,
        policy.Suppression,
        flags.Reason,
        flags.EvaluationError,
        flags.Operator,
    ],
    ids=lambda e: e.__name__,
)
def test_every_degradation_value_documented(values: type[enum.Enum]) -> None:
    """Every level, cause, suppression, flag reason, error and operator is in degradation.md."""
    page = _page("degradation.md")
    labels = [v.label if isinstance(v, Level) else v.value for v in values]
    missing = [label for label in labels if f"`{label}`" not in page]
    assert not missing, f"{values.__name__} values missing from degradation.md: {missing}"


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

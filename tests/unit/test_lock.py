"""The lock pins every package pyproject.toml asks for, inside its range, as installed."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "vigil-reliability"


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.lock: {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    texts = [
        *project["build-system"]["requires"],
        *project["project"]["dependencies"],
        *(r for extra in project["project"]["optional-dependencies"].values() for r in extra),
    ]
    return [Requirement(text) for text in texts]


def _applies(requirement: Requirement, extra: str = "") -> bool:
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({**default_environment(), "extra": extra})


def test_every_declared_requirement_is_pinned_inside_its_range() -> None:
    """Each requirement (all extras, build tools) has a lock pin inside its range."""
    pins = _lock()
    for requirement in _declared():
        if not _applies(requirement):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run 'make lock'"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement}: run 'make lock'"
        )


def test_installed_closure_is_exactly_the_lock() -> None:
    """Every package installed for Vigil and its test extra has exactly its locked version."""
    pins = _lock()
    done: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(PROJECT), ""), (canonicalize_name(PROJECT), "test")]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        distribution = metadata.distribution(name)
        if name != canonicalize_name(PROJECT):
            assert name in pins, f"{name} is installed but not in requirements.lock"
            assert Version(distribution.version) == pins[name], (
                f"{name} {distribution.version} is installed; the lock says {pins[name]}"
            )
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if _applies(requirement, extra):
                needed = canonicalize_name(requirement.name)
                todo += [(needed, e) for e in ["", *requirement.extras]]
    assert len({name for name, _ in done}) > 20, "the walk should reach the whole closure"

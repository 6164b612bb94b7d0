"""Find the service binaries the harness runs; a missing one skips locally and fails under CI."""

from __future__ import annotations

import glob
import os
import shutil
from typing import NoReturn

import pytest

# Debian installs the PostgreSQL server binaries outside PATH, one directory per major version.
_EXTRA_DIRS_GLOB = "/usr/lib/postgresql/*/bin"


def in_ci() -> bool:
    """Return whether the tests run under CI, where missing components are failures."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the current test because a component is unavailable, or fail it under ``CI=true``."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing component is a failure)", pytrace=False)
    pytest.skip(reason)


def find(name: str) -> str | None:
    """Return the absolute path of binary ``name`` (PATH, then PostgreSQL dirs), or ``None``."""
    found = shutil.which(name)
    if found:
        return found
    # Newest PostgreSQL major first, so a machine with two versions uses the newer one.
    dirs = sorted(glob.glob(_EXTRA_DIRS_GLOB), key=_version_key, reverse=True)
    for directory in dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require(name: str) -> str:
    """Return the path of binary ``name``; skip (fail under ``CI=true``) if it is missing."""
    path = find(name)
    if path is None:
        unavailable(f"binary {name!r} not found on PATH or in {_EXTRA_DIRS_GLOB}")
    return path


def _version_key(directory: str) -> tuple[int, str]:
    version = directory.rstrip("/").split("/")[-2]
    return (int(version), version) if version.isdigit() else (-1, version)

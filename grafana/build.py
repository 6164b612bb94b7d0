"""Write Vigil's Grafana dashboards (classic JSON model) from the typed builders of this package.

``python -m grafana.build`` (from the repository root) rewrites ``grafana/dashboards/*.json``;
``--check`` writes nothing and exits 1 when a committed file differs from what is built.

The dashboards are assembled with grafana-foundation-sdk, whose builders and models follow
Grafana's dashboard schema (the version pinned in pyproject.toml), so what the schema does not
allow fails before Grafana sees it: an option a panel type lacks is an ``AttributeError`` here, a
size off the grid a ``ValueError``, a wrong type or enum value an error of ``mypy --strict``
(which ``tests/contract/test_dashboards.py`` runs). The conventions every dashboard follows are in
:mod:`grafana.frame`, :mod:`grafana.panels` and :mod:`grafana.queries`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana import backup, checks, degradation, limits, overview

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DASHBOARDS: tuple[Callable[[], Dashboard], ...] = (
    overview.build,
    checks.build,
    degradation.build,
    limits.build,
    backup.build,
)


def render(dashboard: Dashboard) -> str:
    """The file content for ``dashboard``: sorted-key, two-space JSON with a final newline."""
    text = json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
    return text + "\n"


def build(out_dir: Path = OUT_DIR) -> dict[Path, str]:
    """Every dashboard file this package generates, by path."""
    dashboards = [make() for make in DASHBOARDS]
    return {out_dir / f"{d.uid}.json": render(d) for d in dashboards}


def stale(files: dict[Path, str]) -> list[Path]:
    """The paths whose committed content differs from ``files`` (or that are missing)."""
    return [p for p, text in files.items() if not p.exists() or p.read_text() != text]


def main(argv: Iterable[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` report the stale ones and return 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if committed JSON is stale")
    args = parser.parse_args(list(argv) if argv is not None else None)
    files = build()
    outdated = stale(files)
    if args.check:
        for path in outdated:
            print(f"stale: {path} (run: python -m grafana.build)", file=sys.stderr)
        return 1 if outdated else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path in outdated:
        path.write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PromQL for the dashboards: selectors scoped to the ``job``/``instance`` variables, and targets.

Every metric selector is built by :func:`sel`, so every query carries
``job=~"$job",instance=~"$instance"`` (``tests/contract/test_dashboards.py`` checks it).
"""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

# The `datasource` variable, never a fixed uid: the files work with file provisioning as they are.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTOR = 'job=~"$job",instance=~"$instance"'
# The states of a one-series-per-state gauge, by the index a panel maps back to a name.
STATES = ("healthy", "degraded", "unhealthy", "unknown")


def sel(metric: str, extra: str = "") -> str:
    """A selector for ``metric`` restricted to the dashboard's ``job`` and ``instance``.

    ``extra`` is further label matchers, e.g. ``'state="healthy"'``.
    """
    matchers = SELECTOR + ("," + extra if extra else "")
    return f"{metric}{{{matchers}}}"


def rate_by(metric: str, by: str, function: Literal["rate", "increase"] = "rate") -> str:
    """``sum by (by)`` of the ``rate`` (or ``increase``) of ``metric`` over ``$__rate_interval``."""
    return f"sum by ({by}) ({function}({sel(metric)}[$__rate_interval]))"


def state_index(metric: str, by: str) -> str:
    """Turn a one-series-per-``state`` gauge into one number: 0 healthy … 3 unknown.

    Non-current states are 0, so the max over the weighted series is the current state's index.
    """
    parts = " or ".join(
        sel(metric, f'state="{state}"') + f" * {index}" for index, state in enumerate(STATES)
    )
    return f"max by ({by}) ({parts})"


def query(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False
) -> prometheus.Dataquery:
    """A Prometheus target: a range query unless ``instant``; ``table``: one row per series."""
    target = (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend or "__auto")
        .editor_mode(QueryEditorMode.CODE)
        .datasource(DATASOURCE)
    )
    target = target.instant() if instant else target.range()
    return target.format(PromQueryFormat.TABLE) if table else target

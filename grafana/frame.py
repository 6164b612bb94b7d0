"""What every Vigil dashboard has around its panels: variables, links, annotations and the grid.

Every dashboard gets the ``datasource`` variable, ``job`` and ``instance`` from
``vigil_agent_info`` (multi-value, with "All"), the hidden ``runbook_base`` variable, a "Runbooks"
link and a dropdown of the other Vigil dashboards; titled Grafana rows (``section``) group its
panels where it covers several concerns.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as models

from grafana.panels import RUNBOOK_BASE, AnyPanel, runbook
from grafana.queries import DATASOURCE

# Point the runbook links at the published docs here (or per visit: ?var-runbook_base=https://...).
RUNBOOK_BASE_DEFAULT = "https://docs.example.internal/vigil/docs/runbooks"
TAGS = ["vigil"]
GRID_WIDTH = 24
# Grafana's own annotation source (alerts and annotations saved on the dashboard).
GRAFANA = models.DataSourceRef(type_val="grafana", uid="-- Grafana --")


class _PrometheusAnnotationQuery(models.AnnotationQuery):
    """The SDK's annotation model with the fields the Prometheus datasource reads beside ``expr``.

    The SDK models Grafana's dashboard schema, which leaves a datasource's own annotation fields
    out, so there is no builder for them: these five are added to the JSON here.
    """

    def __init__(self, title_format: str, text_format: str) -> None:
        super().__init__()
        self.title_format = title_format
        self.text_format = text_format

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "titleFormat": self.title_format,
            "textFormat": self.text_format,
            "step": "$__interval",  # one event per step where the query has a sample
            "tagKeys": "job,instance",
            "useValueForTime": False,
        }


class PrometheusAnnotation(builders.AnnotationQuery):
    """An enabled annotation: one event per step where the PromQL ``expr`` returns a sample."""

    _internal: _PrometheusAnnotationQuery

    def __init__(self, name: str, expr: str, *, title: str, text: str, colour: str) -> None:
        super().__init__()
        self._internal = _PrometheusAnnotationQuery(title_format=title, text_format=text)
        self.name(name).expr(expr).datasource(DATASOURCE).enable(True).hide(False)
        self.icon_color(colour)


def _builtin_annotation() -> builders.AnnotationQuery:
    return (
        builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .type("dashboard")
        .built_in(1)
        .datasource(GRAFANA)
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
    )


def _agent_variable(name: str, label: str, query: str) -> builders.QueryVariable:
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def _variables() -> list[builders.DatasourceVariable | builders.QueryVariable]:
    return [
        builders.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _agent_variable("job", "Job", "label_values(vigil_agent_info, job)"),
        _agent_variable(
            "instance", "Instance", 'label_values(vigil_agent_info{job=~"$job"}, instance)'
        ),
    ]


def _runbook_base() -> builders.TextBoxVariable:
    default = models.VariableOption(text=RUNBOOK_BASE_DEFAULT, value=RUNBOOK_BASE_DEFAULT)
    return (
        builders.TextBoxVariable(RUNBOOK_BASE)
        .label("Runbook base URL")
        .description("Where docs/runbooks is published; override with ?var-runbook_base=...")
        .default_value(RUNBOOK_BASE_DEFAULT)
        .current(default)
        .options(
            [models.VariableOption(selected=True, text=RUNBOOK_BASE_DEFAULT, value=default.value)]
        )
        .hide(models.VariableHide.HIDE_VARIABLE)
    )


def _links() -> list[Builder[models.DashboardLink]]:
    runbooks = (
        builders.DashboardLink("Runbooks")
        .type(models.DashboardLinkType.LINK)
        .url(runbook("README.md"))
        .icon("doc")
        .tooltip("Vigil runbooks: one section per alert")
        .target_blank(True)
    )
    dashboards = (
        builders.DashboardLink("Vigil dashboards")
        .type(models.DashboardLinkType.DASHBOARDS)
        .tags(TAGS)
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
        .icon("external link")
    )
    return [runbooks, dashboards]


def section(title: str) -> builders.Row:
    """A titled Grafana row, open: a header above the rows of panels that follow it, up to the
    next section (a dashboard that several concerns share gets one per concern)."""
    return builders.Row(title).collapsed(False).datasource(DATASOURCE)


def dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[Sequence[AnyPanel] | builders.Row],
    annotations: Sequence[PrometheusAnnotation] = (),
) -> models.Dashboard:
    """A dashboard whose rows of panels fill the grid left to right, top to bottom.

    The SDK places each panel after the previous one and wraps at the grid's width, so a row
    must fill the width exactly to start the next row where it should. A `section` in `rows`
    starts a titled Grafana row there.
    """
    builder = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .readonly()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh("30s")
        .time("now-6h", "now")
        .links(_links())
        .annotations([_builtin_annotation(), *annotations])
        .variables([*_variables(), _runbook_base()])
    )
    panel_id = 0
    for row in rows:
        if isinstance(row, builders.Row):
            panel_id += 1
            builder.with_row(row.id(panel_id))
            continue
        built = [panel.build() for panel in row]
        width = sum(p.grid_pos.w if p.grid_pos else 0 for p in built)
        if width != GRID_WIDTH:
            titles = [p.title for p in built]
            raise ValueError(f"{uid}: the row {titles} is {width} columns wide, not {GRID_WIDTH}")
        for panel in row:
            panel_id += 1
            builder.with_panel(panel.id(panel_id))
    return builder.build()

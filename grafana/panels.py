"""The four panel types Vigil's dashboards use, with the house style set once.

Each constructor returns the SDK's own builder, so a dashboard adds what is particular to a panel
(thresholds, mappings, links, stacking) with the SDK's typed methods. Every panel has a unit, a
description, the ``datasource`` variable and one PromQL target (``legend`` names its series).
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMapping,
    ValueMappingResult,
)

from grafana.queries import DATASOURCE, STATES, query

AnyPanel: TypeAlias = stat.Panel | timeseries.Panel | table.Panel | statetimeline.Panel
P = TypeVar("P", stat.Panel, timeseries.Panel, table.Panel, statetimeline.Panel)

# The variable holding where docs/runbooks is published (see grafana/frame.py).
RUNBOOK_BASE = "runbook_base"


def runbook(section: str) -> str:
    """The URL of a runbook page or section (``page.md#anchor``) under ``runbook_base``."""
    return f"${{{RUNBOOK_BASE}}}/{section}"


def runbook_link(topic: str, section: str) -> dashboard_builders.DashboardLink:
    """A panel link "Runbook: ``topic``" to a runbook page or section, opened in a new tab."""
    link = dashboard_builders.DashboardLink(f"Runbook: {topic}")
    return link.url(runbook(section)).target_blank(True)


def thresholds(*steps: tuple[str, float | None]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds: (colour, from value) pairs, the first from ``None`` (the base)."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=colour) for colour, value in steps])
    )


def value_names(*entries: tuple[str, str]) -> list[ValueMapping]:
    """A value mapping that shows 0, 1, ... as the given (text, colour) pairs."""
    options = {
        str(index): ValueMappingResult(text=text, color=colour, index=index)
        for index, (text, colour) in enumerate(entries)
    }
    return [ValueMap(options=options)]


STATE_COLOURS = ("green", "orange", "red", "purple")
STATUS_NAMES = value_names(*zip(STATES, STATE_COLOURS, strict=True))
LEVEL_NAMES = value_names(
    ("full", "green"), ("degraded", "yellow"), ("minimal", "orange"), ("maintenance", "blue")
)
YES_NO_NAMES = value_names(("no", "green"), ("yes", "orange"))
# A table column of state names, coloured like the status mapping.
STATE_COLUMN: list[ValueMapping] = [
    ValueMap(
        options={
            state: ValueMappingResult(color=colour, index=index)
            for index, (state, colour) in enumerate(zip(STATES, STATE_COLOURS, strict=True))
        }
    )
]


def _common(
    panel: P,
    title: str,
    description: str,
    unit: str,
    target: prometheus.Dataquery,
    span: int,
    height: int,
) -> P:
    panel.title(title).description(description).datasource(DATASOURCE).unit(unit)
    panel.span(span).height(height).thresholds(thresholds(("green", None)))
    return panel.with_target(target.ref_id("A"))


def _colour(mode: FieldColorModeId) -> dashboard_builders.FieldColor:
    return dashboard_builders.FieldColor().mode(mode)


def stat_panel(
    title: str, description: str, unit: str, expr: str, *, legend: str = "", span: int = 6
) -> stat.Panel:
    """A single value per series (the last one), its background coloured by the thresholds."""
    target = query(expr, legend)
    return (
        _common(stat.Panel(), title, description, unit, target, span, height=5)
        .color_scheme(_colour(FieldColorModeId.THRESHOLDS))
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
        )
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    legend: str = "",
    span: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """Lines (linear, unstacked) with a table legend of the last and the highest value."""
    target = query(expr, legend)
    return (
        _common(timeseries.Panel(), title, description, unit, target, span, height)
        .color_scheme(_colour(FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.LINE)
        .line_interpolation(common.LineInterpolation.LINEAR)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(stacking(common.StackingMode.NONE))
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def stacking(mode: common.StackingMode) -> common_builders.StackingConfig:
    """Series stacking in one group (``NORMAL`` stacks the series of a time series panel)."""
    return common_builders.StackingConfig().mode(mode).group("A")


def state_timeline_panel(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    legend: str,
    span: int = 24,
    height: int,
) -> statetimeline.Panel:
    """One band per series, coloured by its value mapping."""
    target = query(expr, legend)
    return (
        _common(statetimeline.Panel(), title, description, unit, target, span, height)
        .color_scheme(_colour(FieldColorModeId.THRESHOLDS))
        .fill_opacity(80)
        .show_value(common.VisibilityMode.AUTO)
        .align_value(common.TimelineValueAlignment.LEFT)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.SINGLE)
            .sort(common.SortOrder.NONE)
        )
    )


def table_panel(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    height: int,
    hidden: tuple[str, ...] = ("job",),
    value_column: str = "value",
) -> table.Panel:
    """One row per series of ``expr`` now; the time and ``hidden`` columns left out."""
    target = query(expr, instant=True, table=True)
    # The SDK types a transformation's options as `object`: Grafana's schema has no model per
    # transformation, so the "organize" options are written as the JSON Grafana reads.
    organize = {
        "excludeByName": dict.fromkeys(("Time", "__name__", *hidden), True),
        "renameByName": {"Value": value_column},
    }
    return (
        _common(table.Panel(), title, description, unit, target, 12, height)
        .color_scheme(_colour(FieldColorModeId.PALETTE_CLASSIC))
        .align(common.FieldTextAlignment.AUTO)
        .cell_options(common.TableAutoCellOptions())
        .cell_height(common.TableCellHeight.SM)
        .footer(common_builders.TableFooterOptions().show(False))
        .with_transformation(DataTransformerConfig(id_val="organize", options=organize))
    )


def coloured_cells(mappings: list[ValueMapping]) -> list[DynamicConfigValue]:
    """Override properties that colour a table column's cells by ``mappings``."""
    return [
        DynamicConfigValue(
            id_val="custom.cellOptions", value=common.TableColoredBackgroundCellOptions()
        ),
        DynamicConfigValue(id_val="mappings", value=mappings),
    ]

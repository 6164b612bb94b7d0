"""Feature flag definitions as stored and validated, and the answer an evaluation gives."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.config.base import Strict
from agent.degradation.flags.constraints import Operator, problem
from agent.degradation.levels import Level

KEY_PATTERN = r"^[^\s/\\?#%.\-\x00-\x1f\x7f][^\s/\\?#%\x00-\x1f\x7f]{0,99}$"
"""A flag key: up to 100 characters of any script (Unleash names are UTF-8), no whitespace, no
`/ \\ ? # %` (it is a path segment of the HTTP API), not starting with `.` or `-`; lower case."""
_VARIANT = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,98}[^\s\x00-\x1f\x7f])?$"
"""A variant name: up to 100 printable characters of any script, not starting or ending blank."""
BUCKETS = 10_000
"""Rollout granularity: 0.01 % steps (see `evaluation.rollout_bucket`)."""
VARIANT_SEED = 86_028_157
"""murmur3 seed of variant choice, distinct from the rollout seed 0 (the value Unleash uses)."""
MAX_DEPENDENCY_DEPTH = 16
"""Longest parent chain accepted; deeper graphs are refused when written."""
UNKNOWN_KEY_LABEL = "<unknown>"
"""The `stats()` flag name under which evaluations of unknown keys are counted (bounded labels)."""
FORMAT_VERSION = 2
"""Version of the stored flag document's layout (1: before strategies; read and upgraded)."""
STICKY_DEFAULT = "default"
"""Stickiness `default`, as Unleash's: `userId`, else `sessionId`, else a random draw."""
STICKY_RANDOM = "random"
"""Stickiness `random`, as Unleash's: a random draw on every evaluation."""
NO_CONTEXT: Mapping[str, str] = MappingProxyType({})
"""The empty evaluation context (immutable, so it can be a default argument)."""


class Reason(enum.StrEnum):
    """Why an evaluation answered as it did: a closed set, usable as a metric label.

    Mirrors OpenFeature's reasons, plus `degraded` (off because of the degradation level) and
    `prerequisite_failed` (a parent flag did not answer as required), which OpenFeature folds into
    `DISABLED`.
    """

    STATIC = "static"
    TARGETING_MATCH = "targeting_match"
    SPLIT = "split"
    DEFAULT = "default"
    DISABLED = "disabled"
    DEGRADED = "degraded"
    PREREQUISITE_FAILED = "prerequisite_failed"
    ERROR = "error"


class EvaluationError(enum.StrEnum):
    """What went wrong in an evaluation answering `error`: a closed set."""

    UNKNOWN_FLAG = "unknown_flag"
    STICKINESS_MISSING = "stickiness_missing"
    EVALUATION_FAILED = "evaluation_failed"


def _to_level(value: object) -> Level:
    """A Level from its name; numbers are refused so the file always reads as names."""
    if isinstance(value, Level):
        return value
    if isinstance(value, str):
        return Level.parse(value)
    msg = "must be a degradation level name"
    raise ValueError(msg)


LevelName = Annotated[
    Level,
    BeforeValidator(_to_level),
    PlainSerializer(lambda level: level.label, return_type=str),
    WithJsonSchema({"type": "string", "enum": [level.label for level in Level]}),
]
"""A `Level` written as its lowercase name in config and in the flag file."""


class TargetingRule(Strict):
    """One condition on a context attribute, as Unleash's constraints (`constraints/`)."""

    attribute: str = Field(min_length=1, max_length=128)
    operator: Operator
    values: list[str] = Field(
        min_length=1,
        description="`equals`, `regex` and the num_, date_ and semver_ operators take exactly one.",
    )
    inverted: bool = Field(
        default=False, description="Negates the answer, also for a missing attribute."
    )
    case_insensitive: bool = Field(
        default=False, description="For the str_ operators and regex; ignored by the others."
    )

    @model_validator(mode="after")
    def _usable(self) -> TargetingRule:
        why = problem(self.operator, self.values)
        if why is not None:
            raise ValueError(why)
        return self


class Payload(Strict):
    """Data an answer carries with its variant, as Unleash's variant payloads: a typed string."""

    type: Literal["string", "json", "csv", "number"]
    value: str = Field(max_length=65_536)


class Override(Strict):
    """Subjects whose `attribute` is one of `values` get this variant, before any hashing."""

    attribute: str = Field(min_length=1, max_length=128)
    values: list[str] = Field(min_length=1)


class Variant(Strict):
    """A named share of the subjects for whom the flag is on."""

    name: str = Field(pattern=_VARIANT)
    weight: int = Field(default=1, ge=0, le=BUCKETS)
    payload: Payload | None = None
    overrides: list[Override] = Field(
        default_factory=list, description="The first variant with a matching override wins."
    )

    @field_validator("name")
    @classmethod
    def _not_off(cls, value: str) -> str:
        # "off" is the variant of every off answer; an on-variant of that name would be ambiguous.
        if value == "off":
            msg = '"off" is reserved for the answer of a flag that is off'
            raise ValueError(msg)
        return value


def _unique_variants(variants: list[Variant]) -> None:
    names = [variant.name for variant in variants]
    if len(set(names)) != len(names):
        msg = "variant names must be unique"
        raise ValueError(msg)
    if variants and sum(variant.weight for variant in variants) == 0:
        msg = "variant weights must not all be 0"
        raise ValueError(msg)


class Dependency(Strict):
    """A parent flag that must answer `enabled` (and one of `variants`, if given) for a child
    to be on."""

    flag: str = Field(pattern=KEY_PATTERN)
    enabled: bool = True
    variant: str | None = Field(default=None, description="One required variant (or `variants`).")
    variants: list[str] = Field(
        default_factory=list, description="The parent must answer one of these variants."
    )

    @model_validator(mode="after")
    def _variant_needs_enabled(self) -> Dependency:
        if self.variant is not None and self.variants:
            msg = "give variant or variants, not both"
            raise ValueError(msg)
        if self.wanted and not self.enabled:
            msg = "variant can only be required of a parent that is enabled"
            raise ValueError(msg)
        return self

    @property
    def wanted(self) -> tuple[str, ...]:
        """The variants of which the parent must answer one; empty when any will do."""
        return (self.variant,) if self.variant is not None else tuple(self.variants)


def _lower(value: str) -> str:
    """`value` when it is lower case (keys and segment names); ValueError otherwise."""
    if value != value.lower():
        msg = f"must be lower case ({value.lower()!r})"
        raise ValueError(msg)
    return value


FlagKey = Annotated[str, Field(pattern=KEY_PATTERN), AfterValidator(_lower)]
"""A flag's key, and a segment's name: `KEY_PATTERN`, in lower case."""


def _unique_names(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        msg = "segment names must not repeat"
        raise ValueError(msg)
    return names


SegmentNames = Annotated[
    list[FlagKey],
    AfterValidator(_unique_names),
    Field(description="Segments whose rules must all match too (by name)."),
]
"""The segments a flag or a strategy names: each one's rules are added to its targeting."""


class Segment(Strict):
    """Targeting rules shared by name: every flag or strategy naming it matches only when all
    of them do (Unleash's segments). A segment without rules matches every context."""

    name: FlagKey
    description: str = ""
    targeting: list[TargetingRule] = Field(default_factory=list, description="All must match.")


class Strategy(Strict):
    """One way a flag can be on: its targeting all matched and the subject in its rollout.

    A flag with strategies is on when any of them is (the first one that is chooses the
    variant: its own variants if it has some, else the flag's).
    """

    rollout_percent: float = Field(default=100.0, ge=0, le=100)
    stickiness: str = Field(default="user_id", min_length=1, max_length=128)
    group_id: str | None = Field(
        default=None, max_length=128, description="Hash group; defaults to the flag's key."
    )
    targeting: list[TargetingRule] = Field(default_factory=list, description="All must match.")
    segments: SegmentNames = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Strategy:
        _unique_variants(self.variants)
        return self


class FlagDefinition(Strict):
    """A flag as written by an operator and persisted in the flag file."""

    key: FlagKey
    description: str = ""
    enabled: bool = False
    rollout_percent: float = Field(default=100.0, ge=0, le=100)
    stickiness: str = Field(default="user_id", min_length=1, max_length=128)
    group_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Hash group; defaults to key."
    )
    targeting: list[TargetingRule] = Field(default_factory=list, description="All must match.")
    segments: SegmentNames = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=list)
    strategies: list[Strategy] = Field(
        default_factory=list,
        description="On when any is on (after `targeting`); each has its own rollout.",
    )
    depends_on: list[Dependency] = Field(default_factory=list)
    disabled_at_level: LevelName | None = Field(
        default=None, description="Off at this degradation level and above."
    )

    @model_validator(mode="after")
    def _consistent(self) -> FlagDefinition:
        _unique_variants(self.variants)
        if self.strategies and self.rollout_percent != 100:
            msg = "with strategies, each strategy has its rollout: rollout_percent must be 100"
            raise ValueError(msg)
        if self.disabled_at_level is Level.FULL:
            msg = "disabled_at_level full would always be off; set enabled: false instead"
            raise ValueError(msg)
        return self

    @property
    def segment_names(self) -> tuple[str, ...]:
        """The segments the flag and its strategies name, each once, in order."""
        names = [*self.segments, *(n for s in self.strategies for n in s.segments)]
        return tuple(dict.fromkeys(names))

    @property
    def variant_names(self) -> tuple[str, ...]:
        """The variants an on answer can carry (`on` when it can be on without a variant)."""
        own = [v.name for v in self.variants if v.weight > 0] or ["on"]
        if not self.strategies:
            return tuple(own)
        names: dict[str, None] = {}
        for strategy in self.strategies:
            names.update(dict.fromkeys([v.name for v in strategy.variants if v.weight > 0] or own))
        return tuple(names)


@dataclasses.dataclass(frozen=True, slots=True)
class FlagDocument:
    """Everything a flag store keeps: the definitions and the segments they name."""

    flags: tuple[FlagDefinition, ...] = ()
    segments: tuple[Segment, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """One flag's answer for one context: never an exception, always a reason."""

    value: bool
    variant: str
    reason: Reason
    flag: str
    error: EvaluationError | None = None
    payload: Payload | None = None

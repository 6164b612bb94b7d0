"""Feature flags: persisted definitions, compiled when written, evaluated without I/O or exceptions.

Evaluation of one flag for a context and a degradation level; the first step that answers wins:

1. unknown key -> off, `error` (`unknown_flag`);
2. `enabled: false` -> off, `disabled`;
3. level at or above `disabled_at_level` -> off, `degraded`;
4. a `depends_on` entry not satisfied by its parent's answer (parents are evaluated with the same
   context and level; a parent answering `error` satisfies nothing) -> off, `prerequisite_failed`;
5. targeting rules present and not all matched -> off, `default`;
6. hashing needed (a rollout strictly between 0 and 100 %, or a choice between several variants)
   but the stickiness attribute is missing from the context -> off, `error` (`stickiness_missing`).
   Never a random draw: the same context always gets the same answer;
7. partial rollout: `bucket = murmur3_32(f"{group_id}:{stickiness_value}", seed=0) % 10000 + 1`,
   on iff `bucket <= round(rollout_percent * 100)` -> `split`. Raising the percentage only adds
   subjects (the bucket never changes), lowering it only removes them;
8. on: the variant is chosen by a second hash (seed 86028157, Unleash's variant seed) over the
   cumulative weights (`split`), or is the only variant / `on` (`targeting_match` when rules were
   present, else `static`).

Everything that does not depend on the context is computed when the set is built: the rollout
threshold as an int, the `group_id:` prefix, rule predicates, parent references and every possible
`Evaluation` object. Evaluation allocates nothing but the hashed string, and counts answers in plain
integers per (flag, reason) for `stats()`.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import enum
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Protocol

import mmh3
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.config.base import Strict
from agent.degradation.errors import FlagError, FlagStoreError
from agent.degradation.levels import Level

_KEY = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
BUCKETS = 10_000
"""Rollout granularity: 0.01 % steps."""
VARIANT_SEED = 86_028_157
"""murmur3 seed of variant choice, distinct from the rollout seed 0 (the value Unleash uses)."""
MAX_DEPENDENCY_DEPTH = 16
"""Longest parent chain accepted; deeper graphs are refused when written."""
UNKNOWN_KEY_LABEL = "<unknown>"
"""The `stats()` flag name under which evaluations of unknown keys are counted (bounded labels)."""
FORMAT_VERSION = 1
"""Version of the flag file's JSON layout."""


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


class Operator(enum.StrEnum):
    """How a targeting rule compares a context attribute with its values."""

    IN = "in"
    NOT_IN = "not_in"
    EQUALS = "equals"
    REGEX = "regex"


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
    """One condition on a context attribute; a missing attribute fails every operator."""

    attribute: str = Field(min_length=1, max_length=128)
    operator: Operator
    values: list[str] = Field(
        min_length=1, description="`equals` and `regex` take exactly one; regex is full-match."
    )

    @model_validator(mode="after")
    def _one_value_when_scalar(self) -> TargetingRule:
        if self.operator in (Operator.EQUALS, Operator.REGEX) and len(self.values) != 1:
            msg = f"operator {self.operator.value} takes exactly one value"
            raise ValueError(msg)
        if self.operator is Operator.REGEX:
            try:
                re.compile(self.values[0])
            except re.error as exc:
                msg = f"regex does not compile: {exc}"
                raise ValueError(msg) from None
            except (OverflowError, RecursionError):  # a{9999999999}, or nested thousands deep
                msg = "regex does not compile: a repeat count or nesting too large"
                raise ValueError(msg) from None
        return self


class Variant(Strict):
    """A named share of the subjects for whom the flag is on."""

    name: str = Field(pattern=_KEY)
    weight: int = Field(default=1, ge=0, le=BUCKETS)

    @field_validator("name")
    @classmethod
    def _not_off(cls, value: str) -> str:
        # "off" is the variant of every off answer; an on-variant of that name would be ambiguous.
        if value == "off":
            msg = '"off" is reserved for the answer of a flag that is off'
            raise ValueError(msg)
        return value


class Dependency(Strict):
    """A parent flag that must answer `enabled` (and `variant`, if given) for a child to be on."""

    flag: str = Field(pattern=_KEY)
    enabled: bool = True
    variant: str | None = None

    @model_validator(mode="after")
    def _variant_needs_enabled(self) -> Dependency:
        if self.variant is not None and not self.enabled:
            msg = "variant can only be required of a parent that is enabled"
            raise ValueError(msg)
        return self


class FlagDefinition(Strict):
    """A flag as written by an operator and persisted in the flag file."""

    key: str = Field(pattern=_KEY)
    description: str = ""
    enabled: bool = False
    rollout_percent: float = Field(default=100.0, ge=0, le=100)
    stickiness: str = Field(default="user_id", min_length=1, max_length=128)
    group_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Hash group; defaults to key."
    )
    targeting: list[TargetingRule] = Field(default_factory=list, description="All must match.")
    variants: list[Variant] = Field(default_factory=list)
    depends_on: list[Dependency] = Field(default_factory=list)
    disabled_at_level: LevelName | None = Field(
        default=None, description="Off at this degradation level and above."
    )

    @model_validator(mode="after")
    def _consistent(self) -> FlagDefinition:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            msg = "variant names must be unique"
            raise ValueError(msg)
        if self.variants and sum(variant.weight for variant in self.variants) == 0:
            msg = "variant weights must not all be 0"
            raise ValueError(msg)
        if self.disabled_at_level is Level.FULL:
            msg = "disabled_at_level full would always be off; set enabled: false instead"
            raise ValueError(msg)
        return self

    @property
    def variant_names(self) -> tuple[str, ...]:
        """The variants an on answer can carry."""
        return tuple(v.name for v in self.variants) or ("on",)


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """One flag's answer for one context: never an exception, always a reason."""

    value: bool
    variant: str
    reason: Reason
    flag: str
    error: EvaluationError | None = None


_Answer = tuple[Evaluation, int]
_Predicate = Callable[[Mapping[str, str]], bool]
_EMPTY: Mapping[str, str] = MappingProxyType({})
_NEVER = len(Level)  # off_level of a flag without disabled_at_level: no level reaches it


def _predicate(rule: TargetingRule) -> _Predicate:
    """The rule as one closure over precompiled values (a frozenset, a bound regex match)."""
    attribute = rule.attribute
    if rule.operator is Operator.EQUALS:
        expected = rule.values[0]
        return lambda ctx: ctx.get(attribute) == expected
    if rule.operator is Operator.REGEX:
        match = re.compile(rule.values[0]).fullmatch
        return lambda ctx: (v := ctx.get(attribute)) is not None and match(v) is not None
    values = frozenset(rule.values)
    if rule.operator is Operator.IN:
        return lambda ctx: ctx.get(attribute) in values
    return lambda ctx: (v := ctx.get(attribute)) is not None and v not in values


class _Flag:
    """A definition compiled for evaluation, with every possible answer prebuilt."""

    __slots__ = (
        "cumulative",
        "degraded",
        "disabled",
        "enabled",
        "failed",
        "hashed",
        "missing",
        "no_match",
        "off_level",
        "parents",
        "prefix",
        "prerequisite_failed",
        "rules",
        "split_off",
        "static",
        "stickiness",
        "threshold",
        "total",
        "variants",
    )

    def __init__(
        self,
        definition: FlagDefinition,
        parents: tuple[tuple[_Flag, bool, str | None], ...],
        slot: Callable[[str, Reason], int],
    ) -> None:
        key = definition.key

        def answer(
            reason: Reason, variant: str = "off", error: EvaluationError | None = None
        ) -> _Answer:
            return Evaluation(variant != "off", variant, reason, key, error), slot(key, reason)

        self.enabled = definition.enabled
        level = definition.disabled_at_level
        self.off_level = _NEVER if level is None else int(level)
        self.parents = parents
        self.rules = tuple(_predicate(rule) for rule in definition.targeting)
        self.stickiness = definition.stickiness
        self.prefix = f"{definition.group_id or key}:"
        self.threshold = round(definition.rollout_percent * 100)
        weighted = [v for v in definition.variants if v.weight > 0]
        several = len(weighted) > 1
        self.hashed = 0 < self.threshold < BUCKETS or several
        on_reason = Reason.TARGETING_MATCH if self.rules else Reason.STATIC
        if self.hashed:
            on_reason = Reason.SPLIT
        names = [v.name for v in weighted] or ["on"]
        self.variants = tuple(answer(on_reason, name) for name in names)
        self.cumulative: tuple[int, ...] | None = None
        self.total = 0
        if several:
            running = 0
            bounds = []
            for v in weighted:
                running += v.weight
                bounds.append(running)
            self.cumulative, self.total = tuple(bounds), running
        self.disabled = answer(Reason.DISABLED)
        self.degraded = answer(Reason.DEGRADED)
        self.prerequisite_failed = answer(Reason.PREREQUISITE_FAILED)
        self.no_match = answer(Reason.DEFAULT)
        self.split_off = answer(Reason.SPLIT)
        self.missing = answer(Reason.ERROR, error=EvaluationError.STICKINESS_MISSING)
        self.failed = answer(Reason.ERROR, error=EvaluationError.EVALUATION_FAILED)
        # The answer when no hash is needed: everyone off (0 %) or everyone on one variant.
        self.static: _Answer | None = None
        if self.threshold == 0:
            self.static = self.split_off
        elif not self.hashed:
            self.static = self.variants[0]

    def resolve(self, ctx: Mapping[str, str], level: int) -> _Answer:
        """This flag's answer; may raise on a malformed context (the caller catches)."""
        if not self.enabled:
            return self.disabled
        if level >= self.off_level:
            return self.degraded
        if self.parents:
            for parent, want_on, want_variant in self.parents:
                got = parent.resolve(ctx, level)[0]
                if (
                    got.reason is Reason.ERROR
                    or got.value is not want_on
                    or (want_variant is not None and got.variant != want_variant)
                ):
                    return self.prerequisite_failed
        if self.rules:
            for rule in self.rules:
                if not rule(ctx):
                    return self.no_match
        if self.static is not None:
            return self.static
        sticky = ctx.get(self.stickiness)
        if sticky is None:
            return self.missing
        subject = self.prefix + sticky
        if self.threshold < BUCKETS and mmh3.hash(subject, 0, False) % BUCKETS >= self.threshold:
            return self.split_off
        if self.cumulative is None:
            return self.variants[0]
        target = mmh3.hash(subject, VARIANT_SEED, False) % self.total + 1
        return self.variants[bisect.bisect_left(self.cumulative, target)]


def _ordered(definitions: Mapping[str, FlagDefinition]) -> list[str]:
    """Keys with parents before children; FlagError naming the first dependency cycle found."""
    done: set[str] = set()
    order: list[str] = []
    for root in definitions:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter([d.flag for d in definitions[root].depends_on])]
        while stack:
            for parent in stack[-1]:
                if parent in on_path:
                    cycle = [*path[path.index(parent) :], parent]
                    msg = "dependency cycle: " + " -> ".join(cycle)
                    raise FlagError(msg)
                if parent not in done:
                    path.append(parent)
                    on_path.add(parent)
                    stack.append(iter([d.flag for d in definitions[parent].depends_on]))
                    break
            else:
                stack.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                order.append(node)
    return order


def _check_references(definitions: Mapping[str, FlagDefinition]) -> None:
    """FlagError for a dependency on an unknown flag or on a variant its parent does not have."""
    for definition in definitions.values():
        for dep in definition.depends_on:
            parent = definitions.get(dep.flag)
            if parent is None:
                msg = f"flag {definition.key!r} depends on unknown flag {dep.flag!r}"
                raise FlagError(msg)
            if dep.variant is not None and dep.variant not in parent.variant_names:
                msg = (
                    f"flag {definition.key!r} depends on variant {dep.variant!r} of {dep.flag!r},"
                    f" whose variants are: {', '.join(parent.variant_names)}"
                )
                raise FlagError(msg)


class FlagSet:
    """An immutable, validated set of compiled flags; `evaluate` is the hot path."""

    __slots__ = (
        "_base",
        "_by_key",
        "_counts",
        "_definitions",
        "_lookup",
        "_slot_keys",
        "_unknown",
    )

    def __init__(self) -> None:
        self._by_key: dict[str, _Flag] = {}
        self._definitions: tuple[FlagDefinition, ...] = ()
        self._lookup: dict[str, FlagDefinition] = {}
        self._counts: list[int] = []
        self._slot_keys: list[tuple[str, Reason]] = []
        self._base: dict[tuple[str, Reason], int] = {}
        self._unknown = 0

    @classmethod
    def build(
        cls,
        definitions: Iterable[FlagDefinition],
        *,
        counts: Mapping[tuple[str, Reason], int] | None = None,
    ) -> FlagSet:
        """Validate and compile `definitions`; FlagError on duplicates, unknown parents, cycles.

        `counts` (a previous set's `stats()`) is carried over so counters stay monotonic.
        """
        by_key: dict[str, FlagDefinition] = {}
        for definition in definitions:
            if definition.key in by_key:
                msg = f"duplicate flag key {definition.key!r}"
                raise FlagError(msg)
            by_key[definition.key] = definition
        _check_references(by_key)
        order = _ordered(by_key)
        depth: dict[str, int] = {}
        for key in order:
            depth[key] = max((depth[d.flag] + 1 for d in by_key[key].depends_on), default=0)
            if depth[key] > MAX_DEPENDENCY_DEPTH:
                msg = f"flag {key!r} sits deeper than {MAX_DEPENDENCY_DEPTH} parent levels"
                raise FlagError(msg)

        flag_set = cls()
        slots: dict[tuple[str, Reason], int] = {}

        def slot(key: str, reason: Reason) -> int:
            index = slots.get((key, reason))
            if index is None:
                index = slots[(key, reason)] = len(flag_set._slot_keys)
                flag_set._slot_keys.append((key, reason))
                flag_set._counts.append(0)
            return index

        for key in order:
            definition = by_key[key]
            parents = tuple(
                (flag_set._by_key[d.flag], d.enabled, d.variant) for d in definition.depends_on
            )
            flag_set._by_key[key] = _Flag(definition, parents, slot)
        flag_set._definitions = tuple(by_key.values())
        flag_set._lookup = by_key
        flag_set._base = dict(counts or {})
        return flag_set

    @property
    def definitions(self) -> tuple[FlagDefinition, ...]:
        """The definitions, in the order given to `build`."""
        return self._definitions

    def get(self, key: str) -> FlagDefinition | None:
        """The definition of `key`, or None."""
        return self._lookup.get(key)

    def __contains__(self, key: object) -> bool:
        """Whether a flag named `key` exists."""
        return key in self._by_key

    def __len__(self) -> int:
        """The number of flags."""
        return len(self._by_key)

    def evaluate(
        self, key: str, context: Mapping[str, str] = _EMPTY, level: Level = Level.FULL
    ) -> Evaluation:
        """The answer of flag `key` for `context` at `level`; never raises, performs no I/O."""
        try:
            flag = self._by_key[key]
        except (KeyError, TypeError):
            self._unknown += 1
            name = key if isinstance(key, str) else repr(key)
            return Evaluation(False, "off", Reason.ERROR, name, EvaluationError.UNKNOWN_FLAG)
        try:
            evaluation, index = flag.resolve(context, level)
        except Exception:
            # A context the caller broke (non-string values, not a mapping) is an answer too.
            evaluation, index = flag.failed
        self._counts[index] += 1
        return evaluation

    def stats(self) -> dict[tuple[str, Reason], int]:
        """A snapshot of evaluation counts per (flag, reason), parents' evaluations excluded.

        Pairs never counted are left out; unknown keys are counted under `UNKNOWN_KEY_LABEL`.
        Counts are exact in one thread; concurrent threads may lose a few increments.
        """
        snapshot = dict(self._base)
        for pair, count in zip(self._slot_keys, self._counts, strict=True):
            if count:
                snapshot[pair] = snapshot.get(pair, 0) + count
        if self._unknown:
            pair = (UNKNOWN_KEY_LABEL, Reason.ERROR)
            snapshot[pair] = snapshot.get(pair, 0) + self._unknown
        return snapshot


class FlagStore(Protocol):
    """Where `Flags` persists its definitions (see `agent.degradation.flagstore`)."""

    @property
    def name(self) -> str:
        """Where the definitions live, as messages name it."""

    def load(self) -> list[FlagDefinition]:
        """The stored definitions."""

    def save(self, definitions: Iterable[FlagDefinition]) -> None:
        """Replace the stored definitions."""


@dataclasses.dataclass(frozen=True, slots=True)
class FlagDiff:
    """What a write changed, for the audit log: JSON definitions before and after, by key.

    Only changed flags appear; a key missing from `before` was created, from `after` deleted.
    """

    before: Mapping[str, dict[str, Any]]
    after: Mapping[str, dict[str, Any]]

    @property
    def keys(self) -> tuple[str, ...]:
        """The changed flag keys, sorted."""
        return tuple(sorted({*self.before, *self.after}))

    def __bool__(self) -> bool:
        """Whether anything changed."""
        return bool(self.before or self.after)


def _full() -> Level:
    """The level source of a Flags given none: always full."""
    return Level.FULL


class Flags:
    """The flags services use: the current FlagSet, its writes, persistence and the ambient level.

    Writes rebuild and validate the whole set, persist it when a store is given, and only then
    make it current; on any error nothing changes. Writes are serialised by a lock (the store does
    blocking I/O: call them through `asyncio.to_thread` from async code). `evaluate` takes no lock.
    """

    def __init__(
        self,
        definitions: Iterable[FlagDefinition] = (),
        *,
        level: Callable[[], Level] = _full,
        forced_off: Callable[[], frozenset[str]] = frozenset,
        store: FlagStore | None = None,
    ) -> None:
        self._set = FlagSet.build(definitions)
        self._level = level
        # Flags a degradation rule switched off while its alerts fire: off, reason `degraded`.
        self._forced_off = forced_off
        self._forced: collections.Counter[str] = collections.Counter()
        self._store = store
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        store: FlagStore,
        *,
        level: Callable[[], Level] = _full,
        forced_off: Callable[[], frozenset[str]] = frozenset,
    ) -> Flags:
        """Flags loaded from `store` and persisted to it; FlagStoreError naming the path if bad."""
        definitions = store.load()
        try:
            return cls(definitions, level=level, forced_off=forced_off, store=store)
        except FlagError as exc:
            msg = f"{store.name}: {exc}"
            raise FlagStoreError(msg) from None

    @property
    def definitions(self) -> tuple[FlagDefinition, ...]:
        """The current definitions."""
        return self._set.definitions

    def get(self, key: str) -> FlagDefinition | None:
        """The current definition of `key`, or None."""
        return self._set.get(key)

    def current_level(self) -> Level:
        """The ambient degradation level; the most degraded one if the level source fails."""
        try:
            return self._level()
        except Exception:
            # Unknown level: shed what is sheddable rather than guess that all is well.
            return Level.MAINTENANCE

    def evaluate(
        self, key: str, context: Mapping[str, str] = _EMPTY, level: Level | None = None
    ) -> Evaluation:
        """The answer of flag `key` at the ambient level (or `level`); never raises, no I/O."""
        if level is None:
            try:
                level = self._level()
            except Exception:
                level = Level.MAINTENANCE
        if key in self._forced_off():
            self._forced[key] += 1
            return Evaluation(False, "off", Reason.DEGRADED, key)
        return self._set.evaluate(key, context, level)

    def stats(self) -> dict[tuple[str, Reason], int]:
        """Evaluation counts per (flag, reason) since start, across writes."""
        counts = self._set.stats()
        for key, forced in self._forced.copy().items():
            counts[key, Reason.DEGRADED] = counts.get((key, Reason.DEGRADED), 0) + forced
        return counts

    def set(self, definition: FlagDefinition) -> FlagDiff:
        """Create or replace one flag."""
        with self._lock:
            current = list(self._set.definitions)
            keys = [d.key for d in current]
            if definition.key in keys:
                current[keys.index(definition.key)] = definition
            else:
                current.append(definition)
            return self._commit(current)

    def delete(self, key: str) -> FlagDiff:
        """Delete one flag; FlagError if unknown or if another flag depends on it."""
        with self._lock:
            if key not in self._set:
                msg = f"unknown flag {key!r}"
                raise FlagError(msg)
            children = [
                d.key for d in self._set.definitions if any(p.flag == key for p in d.depends_on)
            ]
            if children:
                msg = f"cannot delete {key!r}: {', '.join(children)} depend on it"
                raise FlagError(msg)
            return self._commit([d for d in self._set.definitions if d.key != key])

    def close(self) -> None:
        """Release the store's connections, if it holds any."""
        close = getattr(self._store, "close", None)
        if close is not None:
            close()

    def refresh(self) -> bool:
        """Adopt the definitions in the store if another writer changed them (shared stores).

        True when they changed; FlagStoreError when the store cannot be read (nothing changes).
        """
        if self._store is None:
            return False
        definitions = self._store.load()
        with self._lock:
            if list(definitions) == list(self._set.definitions):
                return False
            self._set = FlagSet.build(definitions, counts=self._set.stats())
            return True

    def replace(self, definitions: Iterable[FlagDefinition]) -> FlagDiff:
        """Replace the whole set."""
        with self._lock:
            return self._commit(list(definitions))

    def _commit(self, definitions: list[FlagDefinition]) -> FlagDiff:
        old = self._set
        new = FlagSet.build(definitions, counts=old.stats())
        before = {d.key: d for d in old.definitions}
        after = {d.key: d for d in new.definitions}
        changed = [k for k in {*before, *after} if before.get(k) != after.get(k)]
        if self._store is not None and (changed or [*before] != [*after]):
            self._store.save(new.definitions)
        self._set = new
        return FlagDiff(
            before={k: before[k].model_dump(mode="json") for k in sorted(changed) if k in before},
            after={k: after[k].model_dump(mode="json") for k in sorted(changed) if k in after},
        )

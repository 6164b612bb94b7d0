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
7. partial rollout: with `h = murmur3_32(f"{group_id}:{stickiness_value}", seed=0)` (unsigned),
   `bucket = (h % 100) * 100 + (h // 100) % 100` (0..9999), on iff
   `bucket < round(rollout_percent * 100)` -> `split`. At a whole percentage p this is exactly
   Unleash's `h % 100 + 1 <= p` (the first term is Unleash's bucket, the second only orders the
   subjects inside it for the 0.01 % steps). Raising the percentage only adds subjects (the bucket
   never changes), lowering it only removes them;
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
import re
from collections.abc import Callable, Iterable, Mapping

import mmh3

from agent.degradation.errors import FlagError
from agent.degradation.flags.model import (
    BUCKETS,
    MAX_DEPENDENCY_DEPTH,
    NO_CONTEXT,
    UNKNOWN_KEY_LABEL,
    VARIANT_SEED,
    Evaluation,
    EvaluationError,
    FlagDefinition,
    Operator,
    Reason,
    TargetingRule,
)
from agent.degradation.levels import Level

_Answer = tuple[Evaluation, int]
_Predicate = Callable[[Mapping[str, str]], bool]
_NEVER = len(Level)  # off_level of a flag without disabled_at_level: no level reaches it


def rollout_bucket(group_id: str, value: str) -> int:
    """The rollout bucket (0..9999) of `value` in `group_id`: in at r % iff below round(r * 100).

    The hundreds are Unleash's bucket (`h % 100`, its `normalizedValue` minus one), so at every
    whole percentage the cohort is Unleash's; the units (`h // 100 % 100`) order the subjects
    inside an Unleash bucket for the 0.01 % steps between whole percentages.
    """
    h = mmh3.hash(f"{group_id}:{value}", 0, False)
    return h % 100 * 100 + h // 100 % 100


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
        "units",
        "variants",
        "whole",
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
        self.whole, self.units = divmod(self.threshold, 100)
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
        if self.threshold < BUCKETS:
            # rollout_bucket(...) >= threshold, compared digit by digit: the units are computed
            # only in the one Unleash bucket the threshold cuts (saves ~60 ns an evaluation).
            h = mmh3.hash(subject, 0, False)
            hundreds = h % 100
            if hundreds > self.whole or (hundreds == self.whole and h // 100 % 100 >= self.units):
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
        self, key: str, context: Mapping[str, str] = NO_CONTEXT, level: Level = Level.FULL
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

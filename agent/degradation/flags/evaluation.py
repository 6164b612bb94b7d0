"""Feature flags: persisted definitions, compiled when written, evaluated without I/O or exceptions.

Evaluation of one flag for a context and a degradation level; the first step that answers wins:

1. unknown key -> off, `error` (`unknown_flag`);
2. `enabled: false` -> off, `disabled`;
3. level at or above `disabled_at_level` -> off, `degraded`;
4. a `depends_on` entry not satisfied by its parent's answer (parents are evaluated with the same
   context and level; a parent answering `error` satisfies nothing) -> off, `prerequisite_failed`;
5. targeting rules (its own and those of the segments it names) present and not all matched
   -> off, `default`;
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
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import mmh3

from agent.degradation.errors import FlagError
from agent.degradation.flags.constraints import compile_constraint
from agent.degradation.flags.model import (
    BUCKETS,
    MAX_DEPENDENCY_DEPTH,
    NO_CONTEXT,
    STICKY_DEFAULT,
    STICKY_RANDOM,
    UNKNOWN_KEY_LABEL,
    VARIANT_SEED,
    Evaluation,
    EvaluationError,
    FlagDefinition,
    Payload,
    Reason,
    Segment,
    Strategy,
    TargetingRule,
    Variant,
)
from agent.degradation.levels import Level

_Answer = tuple[Evaluation, int]
_Predicate = Callable[[Mapping[str, str]], bool]
_Segments = Mapping[str, tuple[_Predicate, ...]]
"""Each segment's rules, compiled once for every flag naming it."""
_NEVER = len(Level)  # off_level of a flag without disabled_at_level: no level reaches it
_DRAW = random.randrange  # the random draws Unleash's `default` and `random` stickiness make


def rollout_bucket(group_id: str, value: str) -> int:
    """The rollout bucket (0..9999) of `value` in `group_id`: in at r % iff below round(r * 100).

    The hundreds are Unleash's bucket (`h % 100`, its `normalizedValue` minus one), so at every
    whole percentage the cohort is Unleash's; the units (`h // 100 % 100`) order the subjects
    inside an Unleash bucket for the 0.01 % steps between whole percentages.
    """
    h = mmh3.hash(f"{group_id}:{value}", 0, False)
    return h % 100 * 100 + h // 100 % 100


def _predicate(rule: TargetingRule) -> _Predicate:
    """The rule as one closure over precompiled values (see `constraints.compile_constraint`)."""
    return compile_constraint(
        rule.attribute,
        rule.operator,
        rule.values,
        inverted=rule.inverted,
        case_insensitive=rule.case_insensitive,
    )


def _seed(stickiness: str) -> Callable[[Mapping[str, str]], str | None]:
    """Reads a subject's stickiness value from a context; None when there is none to hash."""
    if stickiness == STICKY_DEFAULT:

        def chain(ctx: Mapping[str, str]) -> str | None:
            value = ctx.get("userId")
            return ctx.get("sessionId") if value is None else value

        return chain
    if stickiness == STICKY_RANDOM:
        return lambda _ctx: None
    return lambda ctx: ctx.get(stickiness)


def _draws(stickiness: str) -> bool:
    """Whether a missing stickiness value means a random draw rather than no answer."""
    return stickiness in (STICKY_DEFAULT, STICKY_RANDOM)


class _Choice:
    """A variant chosen among several: overrides first, then the hash of the subject.

    `choose` answers None when the stickiness value is missing and no draw is allowed.
    """

    __slots__ = (
        "answers",
        "cumulative",
        "draw",
        "overrides",
        "prefix",
        "seed",
        "single",
        "stickiness",
        "total",
    )

    def __init__(
        self,
        variants: list[Variant],
        group: str,
        stickiness: str,
        answer: Callable[[Reason, str, Payload | None], _Answer],
        reason: Reason,
        *,
        draw: bool,
    ) -> None:
        weighted = [v for v in variants if v.weight > 0]
        self.answers = tuple(answer(reason, v.name, v.payload) for v in weighted)
        self.single = self.answers[0] if len(weighted) == 1 else None
        running = 0
        bounds = []
        for v in weighted:
            running += v.weight
            bounds.append(running)
        self.cumulative, self.total = tuple(bounds), running
        self.overrides = tuple(
            (o.attribute, frozenset(o.values), answer(Reason.TARGETING_MATCH, v.name, v.payload))
            for v in variants
            for o in v.overrides
        )
        self.prefix = f"{group}:"
        self.stickiness = stickiness
        self.seed = _seed(stickiness)
        self.draw = draw or _draws(stickiness)

    def choose(self, ctx: Mapping[str, str]) -> _Answer | None:
        """The answer for this subject's variant."""
        for attribute, values, answer in self.overrides:
            if ctx.get(attribute) in values:
                return answer
        if self.single is not None:
            return self.single
        seed = self.seed(ctx)
        if seed is not None:
            target = mmh3.hash(self.prefix + seed, VARIANT_SEED, False) % self.total + 1
        elif self.draw:
            target = _DRAW(self.total) + 1
        else:
            return None
        return self.answers[bisect.bisect_left(self.cumulative, target)]


class _Rollout:
    """Whether a subject is in a rollout of `threshold` buckets (see `rollout_bucket`)."""

    __slots__ = (
        "attribute",
        "chain",
        "draw",
        "prefix",
        "stickiness",
        "threshold",
        "units",
        "whole",
    )

    def __init__(self, percent: float, group: str, stickiness: str) -> None:
        self.threshold = round(percent * 100)
        self.whole, self.units = divmod(self.threshold, 100)
        self.prefix = f"{group}:"
        self.stickiness = stickiness
        self.draw = _draws(stickiness)
        self.chain = stickiness == STICKY_DEFAULT
        self.attribute = None if self.draw else stickiness


def _in_rollout(rollout: _Rollout, ctx: Mapping[str, str]) -> bool | None:
    """In or out; None when the stickiness value is missing and no draw is allowed.

    `_strategy_answer` inlines the same steps in its closure, to save this frame per strategy.
    """
    if rollout.attribute is not None:
        seed = ctx.get(rollout.attribute)
    elif rollout.chain:
        seed = ctx.get("userId")
        if seed is None:
            seed = ctx.get("sessionId")
    else:
        seed = None
    if seed is None:
        return _DRAW(BUCKETS) < rollout.threshold if rollout.draw else None
    # rollout_bucket(...) < threshold, compared digit by digit: the units are computed only in
    # the one Unleash bucket the threshold cuts (saves ~60 ns an evaluation).
    h = mmh3.hash(rollout.prefix + seed, 0, False)
    hundreds = h % 100
    return hundreds < rollout.whole or (
        hundreds == rollout.whole and h // 100 % 100 < rollout.units
    )


_StrategyAnswer = Callable[[Mapping[str, str]], "_Answer | None"]


def _strategy_answer(
    rules: tuple[_Predicate, ...], rollout: _Rollout | None, choice: _Choice
) -> _StrategyAnswer:
    """One strategy as a single closure: its answer when on for a context, else None.

    Specialised on its shape (rules or none, the kind of rollout, one answer or a choice) so
    that an evaluation runs one Python frame per strategy, not one per step.
    """
    single = choice.single if not choice.overrides else None
    choose = choice.choose
    if rollout is None:
        if single is not None:
            if not rules:
                return lambda _ctx: single

            def matched(ctx: Mapping[str, str]) -> _Answer | None:
                for rule in rules:
                    if not rule(ctx):
                        return None
                return single

            return matched

        def chosen(ctx: Mapping[str, str]) -> _Answer | None:
            for rule in rules:
                if not rule(ctx):
                    return None
            return choose(ctx)

        return chosen
    attribute, chain, draw = rollout.attribute, rollout.chain, rollout.draw
    prefix, whole, units, threshold = (
        rollout.prefix,
        rollout.whole,
        rollout.units,
        rollout.threshold,
    )
    hash_ = mmh3.hash
    # A choice hashing the very subject of the rollout (a strategy's own variants: same group,
    # same stickiness) reuses its string: the variant is then one more hash, in this frame.
    cumulative, total, answers = choice.cumulative, choice.total, choice.answers
    shared = (
        single is None
        and not choice.overrides
        and choice.prefix == prefix
        and choice.stickiness == rollout.stickiness
    )
    bisect_left = bisect.bisect_left

    def answer(ctx: Mapping[str, str]) -> _Answer | None:
        for rule in rules:
            if not rule(ctx):
                return None
        if attribute is not None:
            seed = ctx.get(attribute)
        elif chain:
            seed = ctx.get("userId")
            if seed is None:
                seed = ctx.get("sessionId")
        else:
            seed = None
        if seed is None:
            if not draw or _DRAW(BUCKETS) >= threshold:
                return None
        else:
            subject = prefix + seed
            h = hash_(subject, 0, False)
            hundreds = h % 100
            if hundreds > whole or (hundreds == whole and h // 100 % 100 >= units):
                return None
            if shared:
                target = hash_(subject, VARIANT_SEED, False) % total + 1
                return answers[bisect_left(cumulative, target)]
        return single if single is not None else choose(ctx)

    return answer


class _Flag:
    """A definition compiled for evaluation, with every possible answer prebuilt."""

    __slots__ = (
        "choice",
        "degraded",
        "disabled",
        "enabled",
        "failed",
        "missing",
        "no_match",
        "off_level",
        "parents",
        "prerequisite_failed",
        "rollout",
        "rules",
        "split_off",
        "static",
        "strategies",
    )

    def __init__(
        self,
        definition: FlagDefinition,
        parents: tuple[tuple[_Flag, bool, frozenset[str]], ...],
        slot: Callable[[str, Reason], int],
        segments: _Segments,
    ) -> None:
        key = definition.key

        def answer(
            reason: Reason,
            variant: str = "off",
            payload: Payload | None = None,
            error: EvaluationError | None = None,
        ) -> _Answer:
            evaluation = Evaluation(variant != "off", variant, reason, key, error, payload)
            return evaluation, slot(key, reason)

        self.enabled = definition.enabled
        level = definition.disabled_at_level
        self.off_level = _NEVER if level is None else int(level)
        self.parents = parents
        self.rules = _rules(definition.targeting, definition.segments, segments)
        self.disabled = answer(Reason.DISABLED)
        self.degraded = answer(Reason.DEGRADED)
        self.prerequisite_failed = answer(Reason.PREREQUISITE_FAILED)
        self.no_match = answer(Reason.DEFAULT)
        self.split_off = answer(Reason.SPLIT)
        self.missing = answer(Reason.ERROR, error=EvaluationError.STICKINESS_MISSING)
        self.failed = answer(Reason.ERROR, error=EvaluationError.EVALUATION_FAILED)
        group = key if definition.group_id is None else definition.group_id
        variants = definition.variants or [Variant(name="on")]
        several = sum(1 for v in variants if v.weight > 0) > 1
        self.strategies: tuple[_StrategyAnswer, ...] | None = None
        self.static: _Answer | None = None
        self.rollout: _Rollout | None = None
        if definition.strategies:
            self.strategies = tuple(
                self._strategy(s, definition, group, variants, answer, segments)
                for s in definition.strategies
            )
            return
        threshold = round(definition.rollout_percent * 100)
        partial = 0 < threshold < BUCKETS
        on_reason = Reason.TARGETING_MATCH if self.rules else Reason.STATIC
        if partial or several:
            on_reason = Reason.SPLIT
        self.choice = _Choice(variants, group, definition.stickiness, answer, on_reason, draw=False)
        if partial:
            self.rollout = _Rollout(definition.rollout_percent, group, definition.stickiness)
        # The answer when no hash is needed: everyone off (0 %) or everyone on one variant.
        if threshold == 0:
            self.static = self.split_off
        elif not partial and self.choice.single is not None and not self.choice.overrides:
            self.static = self.choice.single

    def _strategy(
        self,
        strategy: Strategy,
        definition: FlagDefinition,
        group: str,
        variants: list[Variant],
        answer: Callable[..., _Answer],
        segments: _Segments,
    ) -> _StrategyAnswer:
        rules = _rules(strategy.targeting, strategy.segments, segments)
        threshold = round(strategy.rollout_percent * 100)
        own = [v for v in strategy.variants if v.weight > 0]
        hashed = 0 < threshold < BUCKETS or len(own if own else variants) > 1
        reason = Reason.TARGETING_MATCH if rules or self.rules else Reason.STATIC
        if hashed:
            reason = Reason.SPLIT
        # Unleash: a strategy's hash group is its groupId, else the feature's name.
        own_group = definition.key if strategy.group_id is None else strategy.group_id
        if own:
            choice = _Choice(
                strategy.variants, own_group, strategy.stickiness, answer, reason, draw=True
            )
        else:
            choice = _Choice(variants, group, definition.stickiness, answer, reason, draw=True)
        rollout = None
        if threshold < BUCKETS or not _draws(strategy.stickiness):
            rollout = _Rollout(strategy.rollout_percent, own_group, strategy.stickiness)
        return _strategy_answer(rules, rollout, choice)

    def resolve(self, ctx: Mapping[str, str], level: int) -> _Answer:
        """This flag's answer; may raise on a malformed context (the caller catches)."""
        if not self.enabled:
            return self.disabled
        if level >= self.off_level:
            return self.degraded
        if self.parents:
            for parent, want_on, wanted in self.parents:
                got = parent.resolve(ctx, level)[0]
                if (
                    got.reason is Reason.ERROR
                    or got.value is not want_on
                    or (wanted and got.variant not in wanted)
                ):
                    return self.prerequisite_failed
        if self.rules:
            for rule in self.rules:
                if not rule(ctx):
                    return self.no_match
        if self.strategies is not None:
            for strategy in self.strategies:
                found = strategy(ctx)
                if found is not None:
                    return found
            return self.no_match
        if self.static is not None:
            return self.static
        if self.rollout is not None:
            held = _in_rollout(self.rollout, ctx)
            if held is None:
                return self.missing
            if not held:
                return self.split_off
        chosen = self.choice.choose(ctx)
        return self.missing if chosen is None else chosen


def _rules(
    targeting: list[TargetingRule], names: list[str], segments: _Segments
) -> tuple[_Predicate, ...]:
    """The predicates of a flag's or a strategy's own rules, then of its segments' rules."""
    own = tuple(_predicate(rule) for rule in targeting)
    return own + tuple(p for name in names for p in segments[name])


_Named = TypeVar("_Named", FlagDefinition, Segment)


def _unique(items: Iterable[_Named], name: Callable[[_Named], str], what: str) -> dict[str, _Named]:
    """`items` by name, in order; FlagError naming the first name given twice."""
    by_name: dict[str, _Named] = {}
    for item in items:
        if name(item) in by_name:
            msg = f"duplicate {what} {name(item)!r}"
            raise FlagError(msg)
        by_name[name(item)] = item
    return by_name


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


def _check_references(
    definitions: Mapping[str, FlagDefinition], segments: Mapping[str, Segment]
) -> None:
    """FlagError for a dependency on an unknown flag or on a variant its parent does not have,
    and for a segment that does not exist."""
    for definition in definitions.values():
        for name in definition.segment_names:
            if name not in segments:
                msg = f"flag {definition.key!r} names unknown segment {name!r}"
                raise FlagError(msg)
        for dep in definition.depends_on:
            parent = definitions.get(dep.flag)
            if parent is None:
                msg = f"flag {definition.key!r} depends on unknown flag {dep.flag!r}"
                raise FlagError(msg)
            for variant in dep.wanted:
                if variant not in parent.variant_names:
                    msg = (
                        f"flag {definition.key!r} depends on variant {variant!r} of {dep.flag!r},"
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
        "_segments",
        "_slot_keys",
        "_unknown",
    )

    def __init__(self) -> None:
        self._by_key: dict[str, _Flag] = {}
        self._definitions: tuple[FlagDefinition, ...] = ()
        self._segments: dict[str, Segment] = {}
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
        segments: Iterable[Segment] = (),
        counts: Mapping[tuple[str, Reason], int] | None = None,
    ) -> FlagSet:
        """Validate and compile `definitions` with the `segments` they name; FlagError on
        duplicate keys or segment names, unknown parents or segments, cycles.

        `counts` (a previous set's `stats()`) is carried over so counters stay monotonic.
        """
        named = _unique(segments, lambda s: s.name, "segment name")
        by_key = _unique(definitions, lambda d: d.key, "flag key")
        _check_references(by_key, named)
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

        compiled = {
            name: tuple(_predicate(rule) for rule in segment.targeting)
            for name, segment in named.items()
        }
        for key in order:
            definition = by_key[key]
            parents = tuple(
                (flag_set._by_key[d.flag], d.enabled, frozenset(d.wanted))
                for d in definition.depends_on
            )
            flag_set._by_key[key] = _Flag(definition, parents, slot, compiled)
        flag_set._definitions = tuple(by_key.values())
        flag_set._segments = named
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

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The segments, in the order given to `build`."""
        return tuple(self._segments.values())

    def segment(self, name: str) -> Segment | None:
        """The segment called `name`, or None."""
        return self._segments.get(name)

    def naming(self, name: str) -> tuple[str, ...]:
        """The keys of the flags naming segment `name` (themselves or in a strategy)."""
        return tuple(d.key for d in self._definitions if name in d.segment_names)

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

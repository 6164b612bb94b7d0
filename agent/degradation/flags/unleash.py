"""Unleash features as Vigil flag definitions: an exact translation, or a refusal with the reason.

The importer of Unleash's client-features documents (`/api/client/features`, or an export). A
feature is translated only when every context gets the same answer from the Vigil flag as from
Unleash's reference engine (Yggdrasil, which the client specification's cases describe);
anything else is refused with the feature's name and why, never approximated:

* each strategy becomes a Vigil strategy (`default`, `userWithId`, `gradualRolloutUserId`,
  `gradualRolloutSessionId`, `gradualRolloutRandom`, `flexibleRollout`, `remoteAddress`), with
  its constraints as targeting rules, its rollout, stickiness, hash group and variants, naming
  its segments; a strategy that can never be on is left out, and a feature whose strategies
  name a segment the document lacks is always off (as in Yggdrasil);
* each segment a translated flag names becomes a Vigil segment, its constraints its rules,
  named after the Unleash segment (see `segment_names`);
* the feature's variants (payloads, overrides; the first variant's stickiness) are the flag's,
  hashed in the feature's name;
* dependencies: on a parent (enabled or not, one of its variants); a child whose parent is
  missing from the document or has parents itself is always off in Unleash, and is imported off;
* custom and `applicationHostname` strategies, and what Python cannot evaluate as Yggdrasil does,
  are refused.

Contexts keep Unleash's field names: `vigil_context` flattens an Unleash context (its
`properties` beside `userId`, `sessionId`, ...) into the mapping Vigil evaluates. An Unleash
answer's variant `disabled` is Vigil's `off` when the flag is off and `on` when it is on without
a variant. The flag key is the feature's name in lower case; the hash groups are written out.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from agent.degradation.flags.constraints import ToggleOff, from_unleash
from agent.degradation.flags.model import KEY_PATTERN, FlagDefinition, Segment

_WHOLE_PERCENT = re.compile(r"[0-9]+")
_ATTRIBUTE_OF = {"gradualRolloutUserId": "userId", "gradualRolloutSessionId": "sessionId"}
_RESERVED = frozenset({"on", "off"})  # Vigil's answers without a variant of their own


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A feature that was not translated: its Unleash name and why."""

    feature: str
    reason: str


class _Never(Exception):  # noqa: N818 - internal control flow
    """Raised inside the translation of a strategy that is never on."""


class DocumentError(ValueError):
    """A file that is not a client-features document: not JSON, or not shaped like one."""


class _Unsupported(Exception):  # noqa: N818 - internal control flow, carries the refusal reason
    """Raised inside the translation; becomes a `Refusal`."""


def flag_key(name: str) -> str:
    """The Vigil key of an Unleash feature name: the name in lower case."""
    return name.lower()


_TOP_LEVEL = ("userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime")
"""The fields of an Unleash context outside `properties`; every other field is a property."""


def vigil_context(context: Mapping[str, Any]) -> dict[str, str]:
    """An Unleash context as Vigil's flat string mapping, read as Unleash's engine reads it.

    The standard fields (`userId`, `sessionId`, `remoteAddress`, `environment`, `appName`,
    `currentTime`) are taken from the top level only, every other field from `properties` only;
    values that are not strings are left out.
    """
    flat: dict[str, str] = {}
    properties = context.get("properties")
    if isinstance(properties, Mapping):
        flat.update(
            (k, v) for k, v in properties.items() if isinstance(v, str) and k not in _TOP_LEVEL
        )
    flat.update((k, v) for k in _TOP_LEVEL if isinstance(v := context.get(k), str))
    return flat


def read_document(raw: bytes | str) -> dict[str, Any]:
    """A client-features document from JSON text, checked as far as translating needs.

    The top level is `{"version": ..., "features": [...], "segments"?: [...]}`; a file holding
    it under `state` (a client-specification test file) is read as its `state`. Every feature is
    an object with a name, and no two share one. `DocumentError` says what is wrong otherwise.
    """
    try:
        document: object = json.loads(raw)
    except RecursionError:
        msg = "not JSON: nested too deeply"
        raise DocumentError(msg) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers past the limit
        msg = f"not JSON: {exc}"
        raise DocumentError(msg) from None
    if not isinstance(document, dict):
        msg = f"not a client-features document: the top level is {_json_type(document)}"
        raise DocumentError(msg)
    state = document.get("state")
    if "features" not in document and isinstance(state, dict):
        document = state
    features = document.get("features")
    if not isinstance(features, list):
        found = "missing" if features is None else _json_type(features)
        msg = f"not a client-features document: features must be a list, is {found}"
        raise DocumentError(msg)
    segments = document.get("segments")
    if segments is not None and not isinstance(segments, list):
        msg = f"segments must be a list, is {_json_type(segments)}"
        raise DocumentError(msg)
    first: dict[str, int] = {}
    for index, feature in enumerate(features):
        if not isinstance(feature, dict):
            msg = f"features[{index}] must be an object, is {_json_type(feature)}"
            raise DocumentError(msg)
        name = feature.get("name")
        if not isinstance(name, str) or not name:
            msg = f"features[{index}] has no name (a non-empty string)"
            raise DocumentError(msg)
        if name in first:
            msg = f"features[{index}]: name {name!r} is also the name of features[{first[name]}]"
            raise DocumentError(msg)
        first[name] = index
    return document


def _json_type(value: object) -> str:
    """What a parsed JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def translate_feature(feature: Mapping[str, Any]) -> FlagDefinition | Refusal:
    """The Vigil definition answering like `feature` for every context, or why there is none.

    Dependencies and segments are left out here (they need the rest of the document: see
    `translate_features`); a feature naming segments is always off without them.
    """
    name = str(feature.get("name", ""))
    try:
        return _validated(name, _fields(name, feature, _Segments([])))
    except _AlwaysOff:
        return _validated(name, _off(name, feature))
    except _Unsupported as exc:
        return Refusal(name, str(exc))


def _off(name: str, feature: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a flag that is always off."""
    return {"key": flag_key(name), "description": str(feature.get("description") or "")}


@dataclasses.dataclass(frozen=True, slots=True)
class Translation:
    """A document's features: definitions by Unleash name (parents before children), refusals,
    notes on features imported off because Unleash always answers off for them, and the
    segments the definitions name, by Vigil name."""

    definitions: dict[str, FlagDefinition]
    refused: list[Refusal]
    notes: dict[str, str]
    segments: dict[str, Segment] = dataclasses.field(default_factory=dict)


def translate_features(document: Mapping[str, Any]) -> Translation:
    """Every feature of a client-features document, as `Translation`.

    Two names with the same key (they differ only in case) are both refused; so is a child
    of a refused parent.
    """
    segments = _Segments(document.get("segments") or [])
    features = {str(f["name"]): f for f in document.get("features", [])}
    fields: dict[str, dict[str, Any]] = {}
    refused: list[Refusal] = []
    notes: dict[str, str] = {}
    for name, feature in features.items():
        try:
            fields[name] = _fields(name, feature, segments)
        except _AlwaysOff as exc:
            fields[name] = _off(name, feature)
            notes[name] = f"imported off, as Unleash answers: {exc}"
        except _Unsupported as exc:
            refused.append(Refusal(name, str(exc)))
    by_key: dict[str, list[str]] = {}
    for name in fields:
        by_key.setdefault(flag_key(name), []).append(name)
    for key, names in by_key.items():
        if len(names) > 1:
            for name in names:
                del fields[name]
                refused.append(Refusal(name, f"key {key!r} is also the key of {names!r}"))
    # Each flag validated on its own first, so that a parent refused here takes its children
    # with it, and a child reads the variants its parent answers from the parent's definition.
    alone: dict[str, FlagDefinition] = {}
    for name in fields:
        try:
            alone[name] = _validated(name, fields[name])
        except _Unsupported as exc:
            refused.append(Refusal(name, str(exc)))
    children: dict[str, list[str]] = {}
    parents: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name in list(alone):
        if name in notes:
            continue
        try:
            found = _dependencies(name, features, alone)
        except _Unsupported as exc:
            del alone[name]
            refused.append(Refusal(name, str(exc)))
            continue
        if isinstance(found, str):
            notes[name] = f"imported off, as Unleash answers: {found}"
            alone[name] = _validated(name, {**fields[name], "enabled": False})
            continue
        parents[name] = found
        for parent, _dependency in found:
            children.setdefault(parent, []).append(name)
    # A child of a refused parent cannot be written without it.
    gone = [r.feature for r in refused]
    while gone:
        for child in children.pop(gone.pop(), []):
            if child in alone:
                del alone[child]
                refused.append(Refusal(child, "its parent feature is refused"))
                gone.append(child)
    definitions: dict[str, FlagDefinition] = {}
    # Parents first: they are written before their children.
    for name in sorted(alone, key=lambda n: bool(parents.get(n))):
        entries = [dependency for _parent, dependency in parents.get(name, [])]
        definitions[name] = (
            _validated(name, {**fields[name], "depends_on": entries}) if entries else alone[name]
        )
    named = {n for definition in definitions.values() for n in definition.segment_names}
    return Translation(definitions, refused, notes, segments.named(named))


class _Segments:
    """A document's segments by id: each one's Vigil name, and its translation once asked for."""

    def __init__(self, raw: Sequence[Any]) -> None:
        self.raw: dict[int, Mapping[str, Any]] = {}
        for segment in raw:
            if isinstance(segment, Mapping):
                number = segment.get("id")
                if isinstance(number, int) and not isinstance(number, bool):
                    self.raw[number] = segment
        self.names = segment_names(self.raw)
        self._done: dict[int, Segment | _Never | _AlwaysOff | _Unsupported] = {}

    def __contains__(self, number: object) -> bool:
        return number in self.raw

    def translated(self, number: int) -> Segment:
        """Segment `number` as a Vigil segment; raises as a constraint of the strategy would."""
        if number not in self._done:
            try:
                self._done[number] = self._translate(number)
            except (_Never, _AlwaysOff, _Unsupported) as exc:
                self._done[number] = exc
        found = self._done[number]
        if isinstance(found, Exception):
            raise found
        return found

    def _translate(self, number: int) -> Segment:
        segment = self.raw[number]
        constraints = segment.get("constraints") or []
        if not isinstance(constraints, list):
            raise _Unsupported(f"segment {number}'s constraints are not a list")
        rules = _rules(constraints)
        description = segment.get("description")
        if not isinstance(description, str) or not description:
            title = segment.get("name")
            shown = f" ({title})" if isinstance(title, str) and title else ""
            description = f"Unleash segment {number}{shown}"
        try:
            return Segment(name=self.names[number], description=description, targeting=rules)
        except ValidationError as exc:
            msg = f"segment {number} is not a valid Vigil segment: {_problems(exc, 'segment')}"
            raise _Unsupported(msg) from None

    def named(self, names: set[str]) -> dict[str, Segment]:
        """The translated segments called one of `names`, in the document's order."""
        return {self.names[n]: self.translated(n) for n in self.raw if self.names[n] in names}


def segment_names(segments: Mapping[int, Mapping[str, Any]]) -> dict[int, str]:
    """The Vigil name of each Unleash segment, by id: its name in lower case with blanks as
    `-`, when that is a valid name no other segment of the document gets; else `segment-<id>`."""
    wished: dict[int, str] = {}
    for number, segment in segments.items():
        title = segment.get("name")
        if isinstance(title, str):
            candidate = "-".join(title.lower().split())
            if re.fullmatch(KEY_PATTERN, candidate):
                wished[number] = candidate
    counts = collections.Counter(wished.values())
    names: dict[int, str] = {}
    taken = {name for name, count in counts.items() if count == 1}
    for number in segments:
        name = wished.get(number)
        if name is None or counts[name] > 1:
            name = f"segment-{number}"
            suffix = 1
            while name in taken:
                suffix += 1
                name = f"segment-{number}-{suffix}"
            taken.add(name)
        names[number] = name
    return names


def _validated(name: str, fields: dict[str, Any]) -> FlagDefinition:
    try:
        return FlagDefinition.model_validate(fields)
    except ValidationError as exc:
        raise _Unsupported(f"not a valid Vigil flag: {_problems(exc, 'flag')}") from None


def _problems(exc: ValidationError, what: str) -> str:
    """Each validation error as `where: why` (`what` where it is the whole model)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors()
    )


def _fields(name: str, feature: Mapping[str, Any], segments: _Segments) -> dict[str, Any]:
    """The fields of the Vigil definition of `feature`, dependencies aside."""
    variants = _variants(feature.get("variants"), "the feature")
    first = feature.get("variants")[0] if variants else None  # type: ignore[index]
    stickiness = (
        str(first.get("stickiness") or "default") if isinstance(first, Mapping) else "default"
    )
    fields: dict[str, Any] = {
        "key": flag_key(name),
        "description": str(feature.get("description") or ""),
        "enabled": feature.get("enabled") is True,
        "group_id": name,
        "stickiness": _stickiness(stickiness),
        "variants": variants,
    }
    strategies = feature.get("strategies")
    if strategies is None:
        strategies = []
    if not isinstance(strategies, Sequence) or isinstance(strategies, str):
        raise _Unsupported("strategies is not a list")
    if not strategies:
        # Unleash: an enabled feature without strategies is on for everyone. As one strategy,
        # its variant choice draws at random when the stickiness value is missing, as Unleash's.
        fields["strategies"] = [{"stickiness": "default"}] if variants else []
        return fields
    translated = []
    for strategy in strategies:
        translated.extend(_strategy(name, strategy, segments))
    if not translated:
        # No strategy is ever on: the feature is off for everyone, still `enabled` (Unleash
        # answers feature_enabled false then too, with the variant `disabled`).
        translated = [{"rollout_percent": 0, "stickiness": "default"}]
    fields["strategies"] = translated
    return fields


class _AlwaysOff(Exception):  # noqa: N818 - internal control flow, carries the reason
    """A feature Unleash always answers off for (Yggdrasil cannot compile it)."""


def _strategy(feature: str, strategy: Any, segments: _Segments) -> list[dict[str, Any]]:
    """The Vigil strategies (none, one or two) answering as this Unleash strategy."""
    if not isinstance(strategy, Mapping):
        raise _Unsupported("a strategy is not an object")
    kind = strategy.get("name")
    if not isinstance(kind, str):
        raise _Unsupported(f"a strategy's name is {_json_type(kind)}, not a string")
    if strategy.get("disabled"):
        raise _Unsupported(f"strategy {kind!r} is disabled, which is not translated")
    parameters = strategy.get("parameters") or {}
    if not isinstance(parameters, Mapping) or not all(
        isinstance(value, str) for value in parameters.values()
    ):
        raise _Unsupported(f"strategy {kind!r} has parameters that are not strings by name")
    variant_stickiness = _stickiness(str(parameters.get("stickiness") or "default"))
    group = parameters.get("groupId")
    base: dict[str, Any] = {
        "group_id": str(group) if group is not None else feature,
        "variants": _variants(strategy.get("variants"), f"strategy {kind!r}"),
    }
    try:
        rules, named = _targeting(kind, strategy, segments)
        extra: list[dict[str, Any]] = []
        shapes: list[dict[str, Any]]
        if kind == "default":
            shapes = [{"stickiness": variant_stickiness}]
        elif kind == "flexibleRollout":
            shapes = [
                {
                    "rollout_percent": _percent(kind, parameters.get("rollout")),
                    "stickiness": variant_stickiness,
                }
            ]
        elif kind in _ATTRIBUTE_OF:
            if group is None:
                raise _Never
            shapes = [
                {
                    "rollout_percent": _percent(kind, parameters.get("percentage")),
                    "stickiness": _ATTRIBUTE_OF[kind],
                }
            ]
        elif kind == "gradualRolloutRandom":
            shapes = [
                {
                    "rollout_percent": _percent(kind, parameters.get("percentage")),
                    "stickiness": "random",
                }
            ]
        elif kind == "userWithId":
            ids = parameters.get("userIds")
            if not isinstance(ids, str):
                raise _Never
            values = [part.strip() for part in ids.split(",")]
            extra = [{"attribute": "userId", "operator": "in", "values": values}]
            shapes = [{"stickiness": variant_stickiness}]
        elif kind == "remoteAddress":
            ips = parameters.get("IPs")
            if not isinstance(ips, str):
                raise _Never
            values = [part.strip() for part in ips.split(",")]
            rule = _rule({"contextName": "remoteAddress", "operator": "IN_CIDR", "values": values})
            if rule is False:
                raise _Never
            extra = [] if rule is True else [rule]
            shapes = [{"stickiness": variant_stickiness}]
        else:
            raise _Unsupported(f"strategy {kind!r} has no Vigil equivalent")
    except _Never:
        return []
    out = []
    for shape in shapes:
        stickiness = shape["stickiness"]
        several = sum(1 for v in base["variants"] if v["weight"] > 0) > 1
        if (
            several
            and stickiness != variant_stickiness
            and not (stickiness == "userId" and variant_stickiness == "default")
        ):
            raise _Unsupported(
                f"strategy {kind!r} hashes its rollout on {stickiness!r}"
                f" and its variants on {variant_stickiness!r}"
            )
        if shape.get("rollout_percent", 100) == 0:
            continue
        out.append({**base, **shape, "targeting": [*rules, *extra], "segments": named})
    return out


def _targeting(
    kind: object, strategy: Mapping[str, Any], segments: _Segments
) -> tuple[list[dict[str, Any]], list[str]]:
    """The strategy's constraints as targeting rules and the Vigil names of its segments;
    _Never when a constraint (its own or a segment's) can never hold, _AlwaysOff when a segment
    is not in the document."""
    constraints = strategy.get("constraints") or []
    ids = strategy.get("segments") or []
    if not isinstance(constraints, list) or not isinstance(ids, list):
        raise _Unsupported(f"strategy {kind!r} has constraints or segments that are not lists")
    for segment in ids:
        if not isinstance(segment, int) or isinstance(segment, bool):
            raise _Unsupported(f"strategy {kind!r} names segment {segment!r}, not a number")
        if segment not in segments:
            raise _AlwaysOff(f"a strategy names segment {segment!r}, which the document lacks")
    rules = _rules(constraints)
    # After its own constraints, as Unleash reads them: the first one that decides, decides.
    named = [segments.translated(segment).name for segment in ids]
    return rules, list(dict.fromkeys(named))  # naming one twice adds nothing


def _rules(constraints: list[Any]) -> list[dict[str, Any]]:
    """Constraints as targeting rules, in order, leaving out those that always hold; _Never as
    soon as one never does."""
    rules = []
    for constraint in constraints:
        rule = _rule(constraint)
        if rule is False:
            raise _Never
        if rule is not True:
            rules.append(rule)
    return rules


def _rule(constraint: Any) -> dict[str, Any] | bool:
    """One Unleash constraint as a targeting rule, or the answer it always gives."""
    if not isinstance(constraint, Mapping):
        raise _Unsupported("a constraint is not an object")
    try:
        translated = from_unleash(constraint)
    except ToggleOff as exc:
        raise _AlwaysOff(f"a constraint on {constraint.get('contextName')!r}: {exc}") from None
    except ValueError as exc:
        raise _Unsupported(f"constraint on {constraint.get('contextName')!r}: {exc}") from None
    if isinstance(translated, bool):
        return translated
    attribute, operator, values, inverted, case_insensitive = translated
    return {
        "attribute": attribute,
        "operator": operator.value,
        "values": list(values),
        "inverted": inverted,
        "case_insensitive": case_insensitive,
    }


def _variants(raw: Any, where: str) -> list[dict[str, Any]]:
    """Unleash variants as Vigil's (name, weight, payload, overrides)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _Unsupported(f"the variants of {where} are not a list")
    variants = []
    for variant in raw:
        if not isinstance(variant, Mapping):
            raise _Unsupported(f"a variant of {where} is not an object")
        name = variant.get("name")
        if not isinstance(name, str):
            raise _Unsupported(f"a variant of {where} has a name that is not a string")
        if name in _RESERVED or name == "disabled":
            raise _Unsupported(
                f"variant {name!r} of {where}: the name of an answer without a variant"
            )
        weight = variant.get("weight", 0)
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise _Unsupported(
                f"variant {name!r} of {where} has weight {weight!r}, not a whole number"
            )
        payload = variant.get("payload")
        if payload is not None:
            if not isinstance(payload, Mapping):
                raise _Unsupported(
                    f"variant {name!r} of {where} has a payload that is not an object"
                )
            payload = {"type": payload.get("type"), "value": payload.get("value")}
        overrides = []
        raw_overrides = variant.get("overrides") or []
        if not isinstance(raw_overrides, list):
            raise _Unsupported(f"the overrides of variant {name!r} of {where} are not a list")
        for override in raw_overrides:
            values = override.get("values") if isinstance(override, Mapping) else None
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                msg = f"an override of variant {name!r} of {where} is not a context name and values"
                raise _Unsupported(msg)
            if values:  # an override without values matches nobody
                overrides.append({"attribute": override.get("contextName"), "values": values})
        variants.append(
            {"name": name, "weight": weight, "payload": payload, "overrides": overrides}
        )
    return variants


def _stickiness(unleash: str) -> str:
    """Vigil's stickiness for Unleash's: the same words, `default` and `random` included."""
    return unleash


def _dependencies(
    name: str, features: Mapping[str, Mapping[str, Any]], alone: Mapping[str, FlagDefinition]
) -> list[tuple[str, dict[str, Any]]] | str:
    """The child's `depends_on` entries beside the Unleash name of each parent, or why the
    child is always off instead."""
    raw = features[name].get("dependencies") or []
    if not isinstance(raw, list):
        raise _Unsupported("dependencies is not a list")
    depends_on = []
    for dependency in raw:
        if not isinstance(dependency, Mapping) or not isinstance(dependency.get("feature"), str):
            raise _Unsupported("a dependency is not an object naming a feature")
        parent = dependency["feature"]
        if parent not in features:
            return f"its parent {parent!r} is not in the document"
        if features[parent].get("dependencies"):
            return f"its parent {parent!r} has parents itself"
        enabled = dependency.get("enabled", True) is not False
        wanted = dependency.get("variants") or []
        if not isinstance(wanted, list):
            raise _Unsupported(f"the variants required of {parent!r} are not a list")
        entry: dict[str, Any] = {"flag": flag_key(parent), "enabled": enabled}
        if wanted:
            if not enabled:
                raise _Unsupported(f"variants are required of {parent!r}, which must be off")
            if parent not in alone:
                raise _Unsupported(f"its parent {parent!r} is refused")
            # Yggdrasil: a parent answering without a variant satisfies any list.
            chosen = [v for v in alone[parent].variant_names if v in wanted or v == "on"]
            if not chosen:
                return f"it requires variants {wanted!r} that its parent {parent!r} never answers"
            entry["variants"] = chosen
        depends_on.append((parent, entry))
    return depends_on


def _percent(kind: object, value: object) -> int:
    """A whole percentage 0-100 as Unleash writes it (a string or a number); _Never when
    Unleash cannot read one (it is never on then)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _WHOLE_PERCENT.fullmatch(text):
        raise _Never  # Yggdrasil reads no percentage: the strategy is never on
    if int(text) > 100:
        raise _Unsupported(f"strategy {kind!r} has percentage {value!r}, above 100")
    return int(text)

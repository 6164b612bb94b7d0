"""Unleash features as Vigil flag definitions: an exact translation, or a refusal with the reason.

The start of an importer of Unleash's client-features documents (`/api/client/features`). A
feature is translated only when every context gets the same answer from the Vigil flag as from
Unleash's client specification; anything else is refused with the feature's name and why, never
approximated. What translates today:

* `enabled`, and the strategies `default`, `flexibleRollout` (`rollout`, `stickiness`, `groupId`),
  `gradualRolloutUserId`, `gradualRolloutSessionId` (`percentage`, `groupId`) and
  `gradualRolloutRandom` (`percentage`), at whole percentages (Unleash's steps), with no
  constraints, segments or strategy variants;
* several strategies (Unleash turns a feature on when any strategy is on) only when they reduce
  exactly to one: a strategy at 0 % is never on and is dropped; `default`, or 100 % of a random
  draw (`gradualRolloutRandom`, or the `default` / `random` stickiness), is on for everyone;
* a draw at random (those stickinesses strictly between 0 and 100 %) is refused: Vigil never
  draws, the same context always gets the same answer.

Contexts keep Unleash's field names: `vigil_context` flattens an Unleash context (its
`properties` beside `userId`, `sessionId`, ...) into the mapping Vigil evaluates, so a stickiness
`userId` hashes the `userId` attribute. Unleash is off when the stickiness field is absent, also
at 100 %, where Vigil hashes nothing; the translation says so with a targeting rule that any
value of that attribute matches. An empty value counts as present, as in Unleash's engine
(Yggdrasil; the Node client alone treats it as absent). The flag key is the feature's name in
lower case; the hash group is always Unleash's (`groupId`, else the feature's name for
`flexibleRollout`), written out in `group_id`, so the cohorts are Unleash's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from agent.degradation.flags.model import FlagDefinition

ANY_VALUE = r"(?s).*"
"""The regex of the targeting rule that requires the stickiness attribute to be present."""
_WHOLE_PERCENT = re.compile(r"\d{1,3}")
_ATTRIBUTE_OF = {"gradualRolloutUserId": "userId", "gradualRolloutSessionId": "sessionId"}
_DRAWN = frozenset({"default", "random"})  # stickinesses that end in (or are) a random draw
_ON, _OFF = "on", "off"  # a strategy on, or off, for every context


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A feature that was not translated: its Unleash name and why."""

    feature: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Rollout:
    """A strategy that is on for a share of the subjects holding `attribute`."""

    percent: int
    attribute: str
    group: str


class DocumentError(ValueError):
    """A file that is not a client-features document: not JSON, or not shaped like one."""


class _Unsupported(Exception):  # noqa: N818 - internal control flow, carries the refusal reason
    """Raised inside the translation; becomes a `Refusal`."""


def flag_key(name: str) -> str:
    """The Vigil key of an Unleash feature name: the name in lower case."""
    return name.lower()


def vigil_context(context: Mapping[str, Any]) -> dict[str, str]:
    """An Unleash context as Vigil's flat string mapping: top-level fields win over `properties`.

    As Unleash resolves a field (`userId`, a custom stickiness field, ...): the top-level field
    if present, else the one in `properties`. Values that are not strings are left out.
    """
    flat: dict[str, str] = {}
    properties = context.get("properties")
    if isinstance(properties, Mapping):
        flat.update((k, v) for k, v in properties.items() if isinstance(v, str))
    flat.update((k, v) for k, v in context.items() if isinstance(v, str))
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
    """The Vigil definition answering like `feature` for every context, or why there is none."""
    name = str(feature.get("name", ""))
    try:
        return _translate(name, feature)
    except _Unsupported as exc:
        return Refusal(name, str(exc))


def translate_features(
    document: Mapping[str, Any],
) -> tuple[dict[str, FlagDefinition], list[Refusal]]:
    """Every feature of a client-features document: definitions by Unleash name, and refusals.

    Two names with the same key (they differ only in case) are both refused.
    """
    definitions: dict[str, FlagDefinition] = {}
    refused: list[Refusal] = []
    for feature in document.get("features", []):
        answer = translate_feature(feature)
        if isinstance(answer, Refusal):
            refused.append(answer)
        else:
            definitions[str(feature["name"])] = answer
    by_key: dict[str, list[str]] = {}
    for name, definition in definitions.items():
        by_key.setdefault(definition.key, []).append(name)
    for key, names in by_key.items():
        if len(names) > 1:
            for name in names:
                del definitions[name]
                refused.append(Refusal(name, f"key {key!r} is also the key of {names!r}"))
    return definitions, refused


def _translate(name: str, feature: Mapping[str, Any]) -> FlagDefinition:
    if feature.get("variants"):
        raise _Unsupported("variants are not translated: Vigil chooses variants differently")
    if feature.get("dependencies"):
        raise _Unsupported("dependencies are not translated")
    strategies = feature.get("strategies")
    if strategies is None:
        strategies = []
    if not isinstance(strategies, Sequence):
        raise _Unsupported("strategies is not a list")
    fields: dict[str, Any] = {
        "key": flag_key(name),
        "description": str(feature.get("description") or ""),
        "enabled": feature.get("enabled") is True,
        **_strategies(name, strategies),
    }
    try:
        return FlagDefinition.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'flag'}: {e['msg']}" for e in exc.errors()
        )
        raise _Unsupported(f"not a valid Vigil flag: {problems}") from None


def _strategies(name: str, strategies: Sequence[Any]) -> dict[str, Any]:
    """The rollout fields of a feature whose strategies reduce exactly to one rollout."""
    if not strategies:
        return {"rollout_percent": 100}  # Unleash: an enabled feature without strategies is on
    kinds = [_strategy(name, strategy) for strategy in strategies]
    if _ON in kinds:
        return {"rollout_percent": 100}
    rollouts = {kind for kind in kinds if isinstance(kind, _Rollout)}
    if not rollouts:
        return {"rollout_percent": 0}
    if len(rollouts) > 1:
        msg = "several strategies can be on for part of the subjects: Vigil has one rollout"
        raise _Unsupported(msg)
    rollout = rollouts.pop()
    presence = {"attribute": rollout.attribute, "operator": "regex", "values": [ANY_VALUE]}
    return {
        "rollout_percent": rollout.percent,
        "stickiness": rollout.attribute,
        "group_id": rollout.group,
        "targeting": [presence],
    }


def _strategy(feature: str, strategy: Any) -> _Rollout | str:
    """One strategy as on for everyone, off for everyone, or a rollout; _Unsupported otherwise."""
    if not isinstance(strategy, Mapping):
        raise _Unsupported("a strategy is not an object")
    kind = strategy.get("name")
    for extra in ("constraints", "segments", "variants"):
        if strategy.get(extra):
            raise _Unsupported(f"strategy {kind!r} has {extra}, which are not translated")
    if strategy.get("disabled"):
        raise _Unsupported(f"strategy {kind!r} is disabled, which is not translated")
    parameters = strategy.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise _Unsupported(f"strategy {kind!r} has parameters that are not an object")
    if kind == "default":
        return _ON
    if kind == "flexibleRollout":
        percent = _percent(kind, parameters.get("rollout"))
        stickiness = str(parameters.get("stickiness") or "default")
        group = str(parameters.get("groupId") or feature)  # Unleash: groupId, else the name
    elif kind in _ATTRIBUTE_OF:
        percent = _percent(kind, parameters.get("percentage"))
        stickiness = _ATTRIBUTE_OF[kind]
        group = str(parameters.get("groupId") or "")
        if not group and 0 < percent < 100:
            raise _Unsupported(f"strategy {kind!r} hashes an empty groupId; Vigil's is never empty")
    elif kind == "gradualRolloutRandom":
        percent = _percent(kind, parameters.get("percentage"))
        stickiness = "random"
    else:
        raise _Unsupported(f"strategy {kind!r} has no Vigil equivalent")
    if percent == 0:
        return _OFF
    if stickiness in _DRAWN:
        if percent == 100:
            return _ON
        msg = f"strategy {kind!r} with stickiness {stickiness!r} draws at random below 100 %"
        raise _Unsupported(msg)
    return _Rollout(percent, stickiness, group or feature)


def _percent(kind: object, value: object) -> int:
    """A whole percentage 0-100, as Unleash writes it (a string or a number)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if _WHOLE_PERCENT.fullmatch(text) and int(text) <= 100:
        return int(text)
    raise _Unsupported(f"strategy {kind!r} has percentage {value!r}, not a whole 0-100")

"""OpenFeature provider over Vigil's flags; import it only with the `openfeature` extra installed.

Flags are boolean with string variants, and a variant can carry a payload (as Unleash's):
`get_boolean_details` answers the flag's value; `get_string_details` the payload of a `string`
or `csv` payload, else the variant's name (`off` when off); `get_integer_details`,
`get_float_details` a `number` payload and `get_object_details` a `json` one. An answer without
a payload of the asked type is the caller's default: with `TYPE_MISMATCH` when the variant has a
payload of another type or the flag is on without one, with Vigil's reason when the flag is off.
The OpenFeature evaluation context becomes Vigil's string context: scalar attributes as text
(booleans as `true`/`false`), other values dropped, and the targeting key as the `targeting_key`
attribute (name it as a flag's `stickiness` to bucket on it).
Vigil's exact reason is kept in the flag metadata as `vigil.reason`, since OpenFeature folds
`degraded` and `prerequisite_failed` into `DISABLED`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.provider import AbstractProvider, Metadata

from agent.degradation.flags import Evaluation, EvaluationError, Flags, Payload, Reason

_REASONS: Mapping[Reason, OpenFeatureReason] = {
    Reason.STATIC: OpenFeatureReason.STATIC,
    Reason.TARGETING_MATCH: OpenFeatureReason.TARGETING_MATCH,
    Reason.SPLIT: OpenFeatureReason.SPLIT,
    Reason.DEFAULT: OpenFeatureReason.DEFAULT,
    Reason.DISABLED: OpenFeatureReason.DISABLED,
    Reason.DEGRADED: OpenFeatureReason.DISABLED,
    Reason.PREREQUISITE_FAILED: OpenFeatureReason.DISABLED,
    Reason.ERROR: OpenFeatureReason.ERROR,
}

_ERRORS: Mapping[EvaluationError, tuple[ErrorCode, str]] = {
    EvaluationError.UNKNOWN_FLAG: (ErrorCode.FLAG_NOT_FOUND, "flag {key!r} not found"),
    EvaluationError.STICKINESS_MISSING: (
        ErrorCode.TARGETING_KEY_MISSING,
        "the context lacks the stickiness attribute of flag {key!r}",
    ),
    EvaluationError.EVALUATION_FAILED: (
        ErrorCode.GENERAL,
        "flag {key!r} could not be evaluated for this context",
    ),
}

_T = TypeVar("_T")


def context_of(evaluation_context: EvaluationContext | None) -> dict[str, str]:
    """Vigil's string context for an OpenFeature evaluation context."""
    if evaluation_context is None:
        return {}
    context: dict[str, str] = {}
    for name, value in evaluation_context.attributes.items():
        if isinstance(value, bool):
            context[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            context[name] = str(value)
    if evaluation_context.targeting_key is not None:
        context["targeting_key"] = evaluation_context.targeting_key
    return context


class VigilProvider(AbstractProvider):
    """An OpenFeature provider answering from a `Flags` instance, at its ambient level."""

    def __init__(self, flags: Flags) -> None:
        super().__init__()
        self._flags = flags

    def get_metadata(self) -> Metadata:
        """The provider's name, `vigil`."""
        return Metadata(name="vigil")

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """The flag's value; the caller's default with an error code when evaluation failed."""
        evaluation = self._flags.evaluate(flag_key, context_of(evaluation_context))
        return self._details(evaluation, evaluation.value, default_value)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        """The variant's string payload, else its name; the default when evaluation failed."""
        evaluation = self._flags.evaluate(flag_key, context_of(evaluation_context))
        payload = evaluation.payload
        if payload is not None and payload.type in ("string", "csv"):
            return self._details(evaluation, payload.value, default_value)
        return self._details(evaluation, evaluation.variant, default_value)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        """A `number` payload that is a whole number; else the default (see the module)."""
        return self._payload(flag_key, evaluation_context, default_value, _integer)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """A `number` payload; else the default (see the module)."""
        return self._payload(flag_key, evaluation_context, default_value, _float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """A `json` payload holding an object or a list; else the default (see the module)."""
        return self._payload(flag_key, evaluation_context, default_value, _object)

    def _payload(
        self,
        flag_key: str,
        evaluation_context: EvaluationContext | None,
        default: _T,
        read: Callable[[Payload], _T | None],
    ) -> FlagResolutionDetails[_T]:
        """The flag's payload as read by `read` (None: not of that type), or the default."""
        evaluation = self._flags.evaluate(flag_key, context_of(evaluation_context))
        if evaluation.error is not None or not evaluation.value:
            return self._details(evaluation, default, default)
        value = None if evaluation.payload is None else read(evaluation.payload)
        if value is None:
            payload = evaluation.payload
            kind = "no payload" if payload is None else f"a {payload.type} payload"
            return FlagResolutionDetails(
                value=default,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"flag {flag_key!r} answered {evaluation.variant!r} with {kind}",
                reason=OpenFeatureReason.ERROR,
                variant=evaluation.variant,
                flag_metadata={"vigil.reason": evaluation.reason.value},
            )
        return self._details(evaluation, value, default)

    def _details(self, evaluation: Evaluation, value: _T, default: _T) -> FlagResolutionDetails[_T]:
        """OpenFeature details of `evaluation` answering `value`, or `default` on error."""
        metadata: dict[str, bool | int | float | str] = {"vigil.reason": evaluation.reason.value}
        if evaluation.reason is Reason.DEGRADED:
            metadata["vigil.degradation_level"] = self._flags.current_level().label
        if evaluation.error is not None:
            code, message = _ERRORS[evaluation.error]
            return FlagResolutionDetails(
                value=default,
                error_code=code,
                error_message=message.format(key=evaluation.flag),
                reason=OpenFeatureReason.ERROR,
                flag_metadata=metadata,
            )
        return FlagResolutionDetails(
            value=value,
            reason=_REASONS[evaluation.reason],
            variant=evaluation.variant,
            flag_metadata=metadata,
        )


def _integer(payload: Payload) -> int | None:
    number = _float(payload)
    return int(number) if number is not None and number.is_integer() else None


def _float(payload: Payload) -> float | None:
    if payload.type != "number":
        return None
    try:
        number = float(payload.value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _object(payload: Payload) -> Sequence[FlagValueType] | Mapping[str, FlagValueType] | None:
    if payload.type != "json":
        return None
    try:
        value = json.loads(payload.value)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None

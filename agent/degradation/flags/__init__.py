"""Feature flags: persisted definitions, compiled when written, evaluated without I/O or exceptions.

`model` holds the definitions and the answers, `constraints` Unleash's constraint operators (the
targeting rules), `evaluation` the compiled `FlagSet` (and how one flag is evaluated), `service`
the `Flags` that services use, `unleash` the exact translation of Unleash features (or the
reason there is none). The names below are the package's
public interface: `from agent.degradation.flags import FlagDefinition, Flags`.
"""

from agent.degradation.flags.constraints import Operator
from agent.degradation.flags.evaluation import FlagSet, rollout_bucket
from agent.degradation.flags.model import (
    BUCKETS,
    FORMAT_VERSION,
    MAX_DEPENDENCY_DEPTH,
    NO_CONTEXT,
    STICKY_DEFAULT,
    STICKY_RANDOM,
    UNKNOWN_KEY_LABEL,
    VARIANT_SEED,
    Dependency,
    Evaluation,
    EvaluationError,
    FlagDefinition,
    FlagDocument,
    Override,
    Payload,
    Reason,
    Segment,
    Strategy,
    TargetingRule,
    Variant,
)
from agent.degradation.flags.service import FlagDiff, Flags, FlagStore

__all__ = [
    "BUCKETS",
    "FORMAT_VERSION",
    "MAX_DEPENDENCY_DEPTH",
    "NO_CONTEXT",
    "STICKY_DEFAULT",
    "STICKY_RANDOM",
    "UNKNOWN_KEY_LABEL",
    "VARIANT_SEED",
    "Dependency",
    "Evaluation",
    "EvaluationError",
    "FlagDefinition",
    "FlagDiff",
    "FlagDocument",
    "FlagSet",
    "FlagStore",
    "Flags",
    "Operator",
    "Override",
    "Payload",
    "Reason",
    "Segment",
    "Strategy",
    "TargetingRule",
    "Variant",
    "rollout_bucket",
]

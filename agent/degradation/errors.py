"""The exceptions of the degradation package, apart from the engine, flags and stores that raise or
catch them, so that a store never imports the engine that uses it."""

from __future__ import annotations


class StoreUnavailableError(Exception):
    """The state store cannot be read or written now; callers answer 503 and retry later."""


class StateError(Exception):
    """The stored state cannot be used; the agent refuses to start over it (nothing is lost)."""


class ConflictError(Exception):
    """Another writer changed the state first (compare-and-set on `version` failed)."""


class RequestError(Exception):
    """One change could not be applied; nothing of it is stored, and the changes committed
    with it are not affected. Validation should refuse such input first: this is the guard
    behind it, and the cause is logged with its traceback."""


class QueryError(ValueError):
    """A query was refused as it stands (a cursor this store never handed out); nothing read."""


class FlagError(ValueError):
    """A set of flag definitions was refused; nothing was changed."""


class FlagStoreError(Exception):
    """The flag file could not be read or written; the message names the path."""

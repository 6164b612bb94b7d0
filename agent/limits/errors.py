"""The exceptions of the limits package, apart from the limiters and storages that raise or catch
them, so that a storage never imports the limiter that uses it."""

from __future__ import annotations


class LimitError(ValueError):
    """A limit was declared with values no strategy can honour; nothing was created."""


class StorageError(Exception):
    """The storage could not decide now (connection refused, timeout, a script error).

    The limiter answers with its failure policy (fail open or fail closed) and counts it; the
    message never holds a secret.
    """


class StorageTimeoutError(StorageError):
    """The storage did not answer within the limiter's timeout."""

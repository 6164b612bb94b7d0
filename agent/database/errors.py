"""The exceptions of the embedded database, apart from the capabilities that catch them and say
what each means for their own callers."""

from __future__ import annotations


class DatabaseError(Exception):
    """The agent's database cannot be used as it is; the message names the file."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be opened, read or written now (a missing or read-only directory, a
    full disk, a lock held past the busy timeout); the same call may succeed later."""


class DatabaseInUseError(DatabaseUnavailableError):
    """Another process owns the database (a running agent, a restore); the message names it."""


class DatabaseCorruptError(DatabaseError):
    """The file is not a usable SQLite database; it is left as it is for the operator."""


class SchemaError(DatabaseError):
    """The database was written by a newer Vigil than this one; nothing in it was changed."""

"""The agent's one embedded database (SQLite): a file under `agent.data_dir` whose tables belong
to the capabilities that declare them (`Schema`), each migrated in order when the file opens."""

from agent.database.connection import Database
from agent.database.errors import (
    DatabaseCorruptError,
    DatabaseError,
    DatabaseInUseError,
    DatabaseUnavailableError,
    SchemaError,
)
from agent.database.owner import OwnerLock
from agent.database.schema import Schema, transaction

__all__ = [
    "Database",
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseInUseError",
    "DatabaseUnavailableError",
    "OwnerLock",
    "Schema",
    "SchemaError",
    "transaction",
]

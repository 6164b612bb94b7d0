"""A job's codec and the configured age identities, as every reader and writer of artifacts
takes them from the configuration: the service, `wal-push` and `wal-fetch`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.backup.artifact import Codec, load_identities
from agent.backup.errors import BackupError, Reason
from agent.config.backup import EncryptionSettings, FilesJob, PostgresJob


def codec(encryption: EncryptionSettings, job: FilesJob | PostgresJob) -> Codec:
    """How `job`'s artifacts are encoded: its compression, and the recipients when it
    encrypts."""
    recipients = tuple(encryption.recipients) if job.encrypt else ()
    return Codec(job.compression, job.compression_level, job.threads, recipients)


def identities(encryption: EncryptionSettings, required: bool = True) -> list[Any]:
    """The age identities from `identity_file` or `identity_env`; none configured is an empty
    list, or BackupError (encryption) when `required` and there are recipients."""
    text = None
    if encryption.identity_file is not None:
        try:
            text = Path(encryption.identity_file).read_text()
        except OSError as exc:
            raise BackupError(
                Reason.ENCRYPTION,
                f"cannot read identity_file {encryption.identity_file}: {exc.strerror}",
            ) from None
    elif encryption.identity_env is not None:
        text = os.environ.get(encryption.identity_env)
    if text is None:
        if required and encryption.recipients:
            raise BackupError(
                Reason.ENCRYPTION,
                "reading encrypted backups needs backup.encryption.identity_file or identity_env",
            )
        return []
    return load_identities(text)

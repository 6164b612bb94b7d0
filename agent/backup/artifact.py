"""Artifacts: a byte stream compressed (zstd with its frame checksum, or gzip), encrypted to age
recipients, and hashed (SHA-256 of the stored bytes) in one pass as it is written; and read back
the other way, with every layer's own check (age's authenticated chunks, zstd's checksum, gzip's
CRC) on top of the stored hash.

Writing is pushed (`ArtifactWriter.write`), reading is pumped (`pump` into any writer, or `Plain`,
a readable stream for consumers that pull, such as `tarfile`). Encryption (`agecipher`) runs in a
thread of its own, with the artifact's hashing and writing, so the thread that produces the data
only compresses; zstd compresses in its own worker threads. Decryption is
pyrage's, an implementation of age independent of the one that wrote the file. A stored file is
created exclusively and fsynced before it counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import gzip
import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyrage  # type: ignore[import-untyped]  # ships no type information
import zstandard

from agent.backup.agecipher import Encryptor, recipient_key
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import ArtifactInfo, Compression

CHUNK = 1 << 17
"""Bytes per read when pumping an artifact."""

_PIPE_BYTES = 1 << 20
_QUEUED_BLOCKS = 8
"""Compressed blocks (1 MiB each) waiting for the encryption thread at most."""
_SYNC_BYTES = 32 << 20
"""The stored file is made durable in the background every this many bytes."""
_EXTENSIONS = {"zstd": ".zst", "gzip": ".gz", "none": ""}
_DEFAULT_LEVEL = {"zstd": 3, "gzip": 6}


class Writable(Protocol):
    """Anything bytes can be written to."""

    def write(self, data: bytes | memoryview, /) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Codec:
    """How an artifact is encoded: compression, its level and threads, and age recipients (none:
    not encrypted)."""

    compression: Compression = "zstd"
    level: int | None = None
    threads: int = 0
    recipients: tuple[str, ...] = ()

    def suffix(self) -> str:
        """The file name ending: `.zst`, `.gz` or nothing, then `.age` when encrypted."""
        return _EXTENSIONS[self.compression] + (".age" if self.recipients else "")

    @property
    def key_id(self) -> str | None:
        """A short, stable name of the recipient set (public keys only), or None."""
        if not self.recipients:
            return None
        joined = "\n".join(sorted(self.recipients)).encode()
        return "age:" + hashlib.sha256(joined).hexdigest()[:16]


def storage_error(exc: OSError, what: str) -> BackupError:
    """An OSError of the repository as a BackupError: a full disk is `space`."""
    reason = Reason.SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else Reason.STORAGE
    return BackupError(reason, f"{what}: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Sink:
    """The stored file: created exclusively, hashed and counted as bytes reach it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.size = 0
        self._synced = 0
        self._syncing: threading.Thread | None = None
        self._sync_error: OSError | None = None
        self.error: BackupError | None = None
        """What failed a write, kept for the writer whose encryption thread it ended."""
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise storage_error(exc, f"cannot create {path}") from None

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            if self.size - self._synced >= _SYNC_BYTES:
                self._sync_in_background()
        except OSError as exc:
            self.error = storage_error(exc, f"cannot write {self.path}")
            raise self.error from None
        return len(data)

    def _sync_in_background(self) -> None:
        """fdatasync what is written so far on a thread of its own while writing goes on (one at
        a time): the fsync at the end then has little left to wait for. On ext4 a single fsync
        of a 160 MB artifact took 0.17 s here, with or without writeback started early
        (posix_fadvise, sync_file_range); a backup of a few seconds lost that much."""
        if self._syncing is not None and self._syncing.is_alive():
            return
        self._synced = self.size
        fd = self._fd

        def sync() -> None:
            try:
                os.fdatasync(fd)
            except OSError as exc:  # raised by finish: the final fsync may not see it again
                self._sync_error = exc

        self._syncing = threading.Thread(target=sync, name="vigil-sync", daemon=True)
        self._syncing.start()

    def _wait_for_sync(self) -> None:
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None

    def flush(self) -> None:
        """Nothing is buffered here (gzip calls it)."""

    def finish(self) -> None:
        try:
            self._wait_for_sync()
            if self._sync_error is not None:
                raise self._sync_error
            os.fsync(self._fd)
        except OSError as exc:
            raise storage_error(exc, f"cannot sync {self.path}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._wait_for_sync()  # never close the descriptor under a running fdatasync
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _Pipe:
    """A kernel pipe between a writing thread and a reading one, as file objects."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        # A bigger pipe means fewer switches between the two threads per megabyte.
        for fd in (read_fd, write_fd):
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            except OSError:
                break  # above /proc/sys/fs/pipe-max-size: keep the default
        self.reader = os.fdopen(read_fd, "rb", buffering=0)
        self._write_fd = write_fd

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self._write_fd, view) :]
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close_writer(self) -> None:
        if self._write_fd >= 0:
            fd, self._write_fd = self._write_fd, -1
            os.close(fd)


class _Worker:
    """One function on a thread of its own, its exception kept for the caller."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the caller by `join`
                self.error = exc

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def join(self) -> BaseException | None:
        self._thread.join()
        return self.error


def _recipients(recipients: Sequence[str]) -> list[bytes]:
    keys = []
    for number, text in enumerate(recipients, 1):
        try:
            keys.append(recipient_key(text))
        except ValueError as exc:
            # Never echo the value: an identity pasted there by mistake is a secret.
            message = f"recipient {number} is not an age X25519 public key: {exc}"
            raise BackupError(Reason.ENCRYPTION, message) from None
    return keys


class _EncryptionStoppedError(Exception):
    """The encryption thread ended early (its own error says why)."""


class _Encrypting:
    """Encryption, hashing and writing of the stored file on a thread of their own, fed through
    a short queue with the compressor's output blocks (handed over, not copied): the thread that
    produces the data only compresses, and OpenSSL's cipher and hash run outside the GIL."""

    def __init__(self, sink: _Sink, recipients: list[bytes]) -> None:
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_BLOCKS)
        self._closed = False
        try:
            # The header here: a recipient that cannot be used fails the writer at once.
            encryptor = Encryptor(sink, recipients)
        except ValueError as exc:
            message = f"cannot encrypt to the recipients: {exc}"
            raise BackupError(Reason.ENCRYPTION, message) from None
        self._thread = threading.Thread(
            target=self._run, args=(encryptor,), name="vigil-encrypt", daemon=True
        )
        self._thread.start()

    def _run(self, encryptor: Encryptor) -> None:
        try:
            while (block := self._queue.get()) is not None:
                encryptor.write(block)
            encryptor.close()
        except BaseException as exc:  # handed to the producer by `write` and `close`
            self.error = exc
            while self._queue.get() is not None:  # a producer blocked on a full queue goes on
                pass

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.error is not None:
            raise _EncryptionStoppedError
        # Compressors hand over new bytes objects; anything else may be reused by its owner.
        self._queue.put(data if type(data) is bytes else bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing is held back here (gzip calls it)."""

    def close(self) -> BaseException | None:
        """End the stream and wait for the thread; its error, if any."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        return self.error


class ArtifactWriter:
    """Encodes what is written to it into the new file `path`; `finish` returns its record.

    On any error, or when closed without `finish`, the partial file is removed.
    """

    def __init__(
        self, path: Path, codec: Codec, progress: Callable[[int], None] | None = None
    ) -> None:
        self.path = path
        self.codec = codec
        self.plain_bytes = 0
        self._progress = progress
        self._sink = _Sink(path)
        self._encrypting: _Encrypting | None = None
        target: Any = self._sink
        try:
            if codec.recipients:
                target = self._encrypting = _Encrypting(self._sink, _recipients(codec.recipients))
            self._stream = self._compressor(target)
        except BaseException:
            self.abort()
            raise

    def _compressor(self, target: Any) -> Any:
        codec = self.codec
        level = codec.level or _DEFAULT_LEVEL.get(codec.compression, 0)
        if codec.compression == "zstd":
            threads = codec.threads or min(4, os.cpu_count() or 1)
            compressor = zstandard.ZstdCompressor(
                level=level, threads=threads, write_checksum=True, write_content_size=False
            )
            # Output in 1 MiB blocks: fewer hand-overs to the encryption thread.
            return compressor.stream_writer(
                target, write_size=1 << 20, closefd=False, write_return_read=True
            )
        if codec.compression == "gzip":
            return gzip.GzipFile(fileobj=target, mode="wb", compresslevel=level, mtime=0)
        return target

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encode `data`; raises BackupError (storage, space) when the file cannot take it."""
        try:
            self._stream.write(data)
        except _EncryptionStoppedError:
            raise self._encryption_failure() from None
        size = len(data)
        self.plain_bytes += size
        if self._progress is not None:
            self._progress(size)
        return size

    def finish(self) -> ArtifactInfo:
        """Flush every layer, fsync the file, and return its record."""
        try:
            if self.codec.compression != "none":
                self._stream.close()  # ends the one frame (a flush first would add an empty one)
            if self._encrypting is not None:
                error = self._encrypting.close()
                if error is not None:
                    raise self._as_backup_error(error)
            self._sink.finish()
        except _EncryptionStoppedError:
            self.abort()
            raise self._encryption_failure() from None
        except BaseException:
            self.abort()
            raise
        return ArtifactInfo(
            name=self.path.name,
            plain_bytes=self.plain_bytes,
            stored_bytes=self._sink.size,
            sha256=self._sink.hash.hexdigest(),
            compression=self.codec.compression,
            key_id=self.codec.key_id,
        )

    def abort(self) -> None:
        """Stop and remove the partial file."""
        if self._encrypting is not None:
            self._encrypting.close()
        self._sink.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _encryption_failure(self) -> BackupError:
        error = self._encrypting.close() if self._encrypting is not None else None
        self.abort()
        return self._as_backup_error(error)

    def _as_backup_error(self, error: BaseException | None) -> BackupError:
        if self._sink.error is not None:
            return self._sink.error  # the disk, not the encryption, failed
        if isinstance(error, BackupError):
            return error
        return BackupError(Reason.ENCRYPTION, f"age encryption failed: {error!r}")

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()


def load_identities(text: str) -> list[Any]:
    """age identities from `age-keygen` output (comments and blank lines allowed)."""
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            # Never put the line in the message: it is a secret key.
            raise BackupError(Reason.ENCRYPTION, "the age identity is malformed") from None
    if not identities:
        raise BackupError(Reason.ENCRYPTION, "the age identity holds no key")
    return identities


class _HashingReader:
    """The stored file read from the start, hashed and counted."""

    def __init__(self, path: Path, progress: Callable[[int], None] | None) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.size = 0
        self._progress = progress
        try:
            self._file: BinaryIO = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise IntegrityError(f"{path.name} is missing from the repository") from None
        except OSError as exc:
            raise storage_error(exc, f"cannot read {path}") from None

    def read(self, size: int = CHUNK) -> bytes:
        try:
            data = self._file.read(size if size > 0 else CHUNK)
        except OSError as exc:
            raise storage_error(exc, f"cannot read {self.path}") from None
        self.hash.update(data)
        self.size += len(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data or b""

    def close(self) -> None:
        self._file.close()


class _Decompressor:
    """Decodes pushed bytes into `out`; `finish` insists the stream ended where it should."""

    def __init__(self, name: str, compression: Compression, out: Writable) -> None:
        self.name = name
        self.compression = compression
        self.out = out
        self.plain_bytes = 0
        self.error: BaseException | None = None
        self._zstd: Any = None
        self._zlib: Any = None
        if compression == "zstd":
            self._zstd = zstandard.ZstdDecompressor().decompressobj(read_across_frames=False)
        elif compression == "gzip":
            self._zlib = zlib.decompressobj(wbits=31)

    def write(self, data: bytes | memoryview) -> int:
        try:
            return self._write(data)
        except BaseException as exc:
            # Kept: pyrage hands an error raised in its writer back wrapped in its own.
            self.error = exc
            raise

    def _write(self, data: bytes | memoryview) -> int:
        try:
            if self._zstd is not None:
                if self._zstd.eof:
                    raise IntegrityError(f"{self.name}: data follows the end of the zstd frame")
                plain = self._zstd.decompress(data)
            elif self._zlib is not None:
                if self._zlib.eof:
                    raise IntegrityError(f"{self.name}: data follows the end of the gzip stream")
                plain = self._zlib.decompress(data)
            else:
                plain = data
        except (zstandard.ZstdError, zlib.error) as exc:
            raise IntegrityError(
                f"{self.name}: {self.compression} stream is corrupt: {exc}"
            ) from None
        if plain:
            self.plain_bytes += len(plain)
            self.out.write(plain)
        return len(data)

    def flush(self) -> None:
        """Nothing is held back."""

    def finish(self) -> None:
        ended = True
        if self._zstd is not None:
            ended = self._zstd.eof and not self._zstd.unused_data
        elif self._zlib is not None:
            ended = self._zlib.eof and not self._zlib.unused_data
        if not ended:
            raise IntegrityError(
                f"{self.name}: {self.compression} stream is truncated or has trailing data"
            )


def pump(
    path: Path,
    info: ArtifactInfo,
    out: Writable,
    identities: Sequence[Any] = (),
    progress: Callable[[int], None] | None = None,
) -> None:
    """Decode the stored artifact `path` into `out`, checking every layer and, at the end, its
    size and SHA-256 against `info`. Raises IntegrityError or BackupError (encryption) on any
    doubt; what reached `out` before is then not to be trusted."""
    source = _HashingReader(path, progress)
    decoder = _Decompressor(path.name, info.compression, out)
    try:
        if info.key_id is not None:
            if not identities:
                raise BackupError(
                    Reason.ENCRYPTION, f"{path.name} is encrypted ({info.key_id}); no identity"
                )
            try:
                pyrage.decrypt_io(source, decoder, list(identities))
            except Exception as exc:  # pyrage.DecryptError, or what a writer raised inside
                if decoder.error is not None:
                    raise decoder.error from None
                raise _decrypt_error(path, exc) from None
        else:
            while data := source.read(CHUNK):
                decoder.write(data)
        decoder.finish()
        # Read to the end: trailing bytes after the age stream would otherwise go unhashed.
        while source.read(CHUNK):
            pass
    finally:
        source.close()
    if source.size != info.stored_bytes or source.hash.hexdigest() != info.sha256:
        raise IntegrityError(
            f"{path.name}: {source.size} bytes with SHA-256 {source.hash.hexdigest()[:16]}...,"
            f" the manifest says {info.stored_bytes} bytes, {info.sha256[:16]}..."
        )
    if decoder.plain_bytes != info.plain_bytes:
        raise IntegrityError(
            f"{path.name}: decoded to {decoder.plain_bytes} bytes, not {info.plain_bytes}"
        )


def _decrypt_error(path: Path, exc: Exception) -> BackupError:
    text = str(exc)
    if "No matching keys" in text or "no identity matched" in text.lower():
        return BackupError(Reason.ENCRYPTION, f"{path.name}: not encrypted to this identity")
    return IntegrityError(f"{path.name}: age decryption failed: {text}")


class _Null:
    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def verify(
    path: Path,
    info: ArtifactInfo,
    identities: Sequence[Any] = (),
    progress: Callable[[int], None] | None = None,
) -> None:
    """Read the whole artifact through every layer, keeping nothing; raises on any doubt."""
    pump(path, info, _Null(), identities, progress)


class Plain:
    """The decoded artifact as a readable stream (decoding on a thread, behind a pipe).

    `close` (or the end of the `with` block) waits for the decoder and raises its error: a
    consumer must close before it trusts what it read.
    """

    def __init__(
        self,
        path: Path,
        info: ArtifactInfo,
        identities: Sequence[Any] = (),
        progress: Callable[[int], None] | None = None,
    ) -> None:
        pipe = self._pipe = _Pipe()

        def decode() -> None:
            try:
                pump(path, info, pipe, identities, progress)
            finally:
                pipe.close_writer()

        self._worker = _Worker("vigil-decode", decode)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while data := self._pipe.reader.read(CHUNK):
                chunks.append(data)
            return b"".join(chunks)
        return self._pipe.reader.read(size) or b""

    def close(self) -> None:
        """Read what the consumer left (a tar's end padding), so the whole artifact is checked,
        and raise the decoder's error, if any."""
        while self._pipe.reader.read(CHUNK):
            pass
        self._abandon()

    def _abandon(self) -> None:
        """Stop reading at once; the decoder's error, if it ended with one before."""
        self._pipe.reader.close()
        error = self._worker.join()
        if error is not None and not isinstance(error, BrokenPipeError):
            raise error

    def __enter__(self) -> Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            with contextlib.suppress(BaseException):  # the consumer's own error goes on
                self._abandon()

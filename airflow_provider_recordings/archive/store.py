"""Writing archives so that nothing incomplete ever counts as archived.

``archive_to`` is a local folder (a path, or a ``file://`` URL) or any URL Airflow's
``ObjectStoragePath`` understands (``s3://bucket/prefix``, ``gs://…``, ``abfs://…``; the
connection as ``conn_id=`` or in the URL, ``s3://my_aws_conn@bucket/prefix``).

**What "archived" means.** A recording counts as archived when, and only when, its
``….json.gz`` is complete, was read back and matched the size and SHA-256 computed while
it was written, and then its ``….json.gz.sha256`` sidecar was written. The sidecar is the
commit mark: it is written last, so a run killed at any earlier point (mid-upload, after
the upload but before the check) leaves no sidecar, and :meth:`ArchiveStore.verify` reports
the recording as not archived. It is one line in ``sha256sum`` format
(``<sha256>  <file name>``), so ``sha256sum -c`` checks a downloaded archive.

**Local folders**: the file is written under a temporary name beside its final name
(``.<name>.<random>.tmp``), flushed and ``fsync``-ed, then renamed over the final name with
``os.replace`` (atomic on POSIX), and the folder is ``fsync``-ed: the final name only ever
holds a complete file. A run killed mid-write leaves a ``.tmp`` file, which never counts
and which the next write of the same recording removes.

**Object stores**: the archive is uploaded straight to its final key. S3 (and GCS's and
Azure's block uploads alike) make an object visible only when its upload completes: a
killed process leaves at most an incomplete multipart upload, which is invisible (an S3
lifecycle rule ``AbortIncompleteMultipartUpload`` reclaims its space). A temporary key
copied to the final one would cost a server-side copy of every byte (and a multipart copy
above 5 GB) and a delete, for no safety gained. One trap is avoided explicitly: fsspec's
file objects complete the upload when closed, even on an exception, so a failed write
*discards* its upload (``discard()``, which aborts the multipart upload) instead of closing.

**How it is verified: read back, always.** After the upload completes, the object is read
back in full (streamed, 4 MiB at a time) and its size and SHA-256 compared with those of
the bytes sent. A store's own checksum was considered and not used: an S3 ETag is an MD5
only for single-part uploads without SSE-KMS (a multipart ETag is a hash of part hashes,
which depends on part sizes the client library chooses), S3's additional checksums
(``x-amz-checksum-sha256``) are per-part composites for multipart uploads and neither s3fs
nor every S3-compatible store supports them, and other stores differ again. Reading back
proves what matters, that the bytes the store will serve are the bytes written, the same
way on every store. Its cost is one GET of the compressed file: free of transfer charges
from a worker in the bucket's region, and small next to the snapshot budget a re-fetch
from PostHog would cost.

**Reruns** (:meth:`ArchiveStore.verify`, :meth:`ArchiveStore.exists_and_verifies`): the
expected checksum comes from the sidecar (or the caller); the object's size is checked
first (one HEAD), then it is read back and hashed. The sidecar was chosen over object
metadata (S3 metadata must be sent before the first byte, when a streamed file's checksum
is not known yet; changing it later is a full copy) and over the manifests (one object per
run part: finding one recording's line means reading many parts).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_recordings.archive.digest import Digest, HashingWriter, digest_of_stream
from airflow_provider_recordings.archive.errors import (
    ArchiveDestinationError,
    ArchiveKeyError,
    ArchiveStorageError,
    ArchiveVerificationError,
)
from airflow_provider_recordings.archive.layout import SIDECAR_SUFFIX

#: The upload part size on object stores: S3's smallest part. The client holds a part (and
#: a copy of it while sending), so this bounds an upload's memory; s3fs's default of 50 MiB
#: would hold over 100 MiB. 10,000 parts of 5 MiB make 48 GiB of compressed archive.
BLOCK_SIZE = 5 * 1024 * 1024
#: Bytes per read when reading back (one ranged GET each on an object store, no read-ahead).
READ_CHUNK = 4 * 1024 * 1024
#: The object :func:`check_writable` writes (and overwrites, and removes where allowed).
WRITE_CHECK = ".airflow-provider-recordings-write-check"
#: How the archives this module writes are verified (recorded in manifests).
VERIFIED_BY = "read_back"


def is_local(archive_to: str) -> bool:
    """Whether ``archive_to`` is a local folder (a path or a ``file://`` URL)."""
    return "://" not in archive_to or archive_to.lower().startswith("file://")


def _local_root(archive_to: str) -> Path:
    if archive_to.lower().startswith("file://"):
        parts = urlsplit(archive_to)
        if parts.netloc not in ("", "localhost"):
            raise ArchiveDestinationError(
                f"archive_to: a file:// URL names a local folder, got host {parts.netloc!r} in {archive_to!r}"
            )
        return Path(unquote(parts.path))
    return Path(archive_to).expanduser()


def check_key(key: str) -> str:
    """A key relative to ``archive_to``: ``a/b/c``, no empty, ``.`` or ``..`` segment."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key:
        raise ArchiveKeyError(f"an archive key is a relative path like 'a/b/c.json.gz', got {key!r}")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise ArchiveKeyError(f"an archive key has no empty, '.' or '..' segment, got {key!r}")
    return key


@dataclass(frozen=True)
class ArchivedFile:
    """An archive written and verified: where it is and what it holds."""

    key: str
    url: str
    size: int
    sha256: str
    verified_by: str = VERIFIED_BY

    @property
    def digest(self) -> Digest:
        return Digest(self.size, self.sha256)


#: The outcomes of :meth:`ArchiveStore.verify`.
VERIFIED = "verified"
MISSING = "missing"
UNVERIFIED = "unverified"
MISMATCH = "mismatch"


@dataclass(frozen=True)
class Verification:
    """What :meth:`ArchiveStore.verify` found.

    ``status`` is ``"verified"`` (the archive is there and its bytes match), ``"missing"``
    (no archive), ``"unverified"`` (a file without its sidecar: a write that never finished
    its check, or a sidecar that is unreadable) or ``"mismatch"`` (its size or SHA-256
    differs from the expected ones: corrupted, cut short, replaced). Only ``verified``
    counts as archived.
    """

    key: str
    url: str
    status: str
    reason: str
    expected: Digest | None = None
    actual: Digest | None = None

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED


def sidecar_text(sha256: str, key: str) -> str:
    """The sidecar's line, ``sha256sum``'s format: ``<sha256>  <file name>``."""
    return f"{sha256}  {key.rsplit('/', 1)[-1]}\n"


def parse_sidecar(text: str) -> str:
    """The SHA-256 of a sidecar (``sha256sum``'s text or binary-mode line)."""
    first = text.strip().split("\n", 1)[0].split()
    if not first:
        raise ValueError("the sidecar is empty")
    return Digest(None, first[0].lower()).sha256


# -- backends ------------------------------------------------------------------------------


class _Handle:
    """An open write: bytes go in, then exactly one of commit or discard."""

    def write(self, data: bytes) -> Any:
        raise NotImplementedError

    def flush(self) -> None:  # pragma: no cover - optional
        pass

    def commit(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError


class _LocalHandle(_Handle):
    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        self._file = open(self.temp, "xb")  # noqa: SIM115 - closed by commit or discard

    def write(self, data: bytes) -> Any:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.temp, self.final)
        except BaseException:
            self.discard()
            raise
        _fsync_folder(self.final.parent)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class _LocalBackend:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def url(self, key: str) -> str:
        return str(self.path(key))

    def open_write(self, key: str) -> _Handle:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of writes of this file that were killed before their rename.
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        return _LocalHandle(final)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[Any]:
        with open(self.path(key), "rb") as handle:
            yield handle

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read_small(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def append(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(descriptor, data)
            if written != len(data):
                raise OSError(f"short append to {path}: {written} of {len(data)} bytes")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class _ObjectHandle(_Handle):
    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, data: bytes) -> Any:
        return self._file.write(data)

    def flush(self) -> None:
        # fsspec uploads a part once a block is full; nothing to force before the end.
        pass

    def commit(self) -> None:
        self._file.close()

    def discard(self) -> None:
        # Closing would complete the upload with what was written so far: abort instead.
        with contextlib.suppress(Exception):
            discard = getattr(self._file, "discard", None)
            if callable(discard):
                discard()
        with contextlib.suppress(Exception):
            self._file.closed = True


class _ObjectBackend:
    def __init__(self, root: str, conn_id: str | None) -> None:
        self.root = root
        self.conn_id = conn_id
        self._fs: Any = None
        self._prefix = ""

    def url(self, key: str) -> str:
        return f"{self.root}/{key}"

    def storage_path(self, key: str) -> Any:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        kwargs = {"conn_id": self.conn_id} if self.conn_id else {}
        return ObjectStoragePath(self.url(key), **kwargs)

    def _fs_path(self, key: str) -> tuple[Any, str]:
        """The filesystem and the path of ``key`` in it. The filesystem is looked up once per
        store (each lookup reads the connection and logs it)."""
        if self._fs is None:
            probe = self.storage_path(WRITE_CHECK)
            path = str(probe.path)
            if not path.endswith("/" + WRITE_CHECK):
                return probe.fs, str(self.storage_path(key).path)
            self._fs, self._prefix = probe.fs, path[: -len(WRITE_CHECK)]
        return self._fs, self._prefix + key

    def open_write(self, key: str) -> _Handle:
        fs, path = self._fs_path(key)
        return _ObjectHandle(fs.open(path, "wb", block_size=BLOCK_SIZE))

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[Any]:
        fs, path = self._fs_path(key)
        fs.invalidate_cache(path)
        with fs.open(path, "rb", block_size=READ_CHUNK, cache_type="none") as handle:
            yield handle

    def size(self, key: str) -> int | None:
        fs, path = self._fs_path(key)
        fs.invalidate_cache(path)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        return int(info["size"])

    def read_small(self, key: str) -> bytes | None:
        fs, path = self._fs_path(key)
        fs.invalidate_cache(path)
        try:
            with fs.open(path, "rb") as handle:
                return bytes(handle.read())
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        fs, path = self._fs_path(key)
        fs.invalidate_cache(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
        fs.invalidate_cache(path)


# -- the store -----------------------------------------------------------------------------


class ArchiveUpload:
    """The file being written by :meth:`ArchiveStore.upload`: a binary sink that counts and
    hashes what passes. ``result`` is set once the archive is committed and verified."""

    def __init__(self, handle: _Handle, key: str) -> None:
        self.key = key
        self._handle = handle
        self._writer = HashingWriter(handle)
        self.result: ArchivedFile | None = None

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def flush(self) -> None:
        self._handle.flush()

    @property
    def digest(self) -> Digest:
        return self._writer.digest


class ArchiveStore:
    """The archives under one ``archive_to``: write, verify, find.

    :param archive_to: a local folder or an ``ObjectStoragePath`` URL (see the module's
        documentation). Trailing slashes are ignored.
    :param conn_id: the Airflow connection of an object store, unless the URL names it.
    """

    def __init__(self, archive_to: str, *, conn_id: str | None = None) -> None:
        if not isinstance(archive_to, str) or not archive_to.strip():
            raise ArchiveDestinationError(
                f"archive_to: give a local folder or an object storage URL, got {archive_to!r}"
            )
        self.archive_to = archive_to.strip()
        self.conn_id = conn_id or None
        self.local = is_local(self.archive_to)
        self._backend: _LocalBackend | _ObjectBackend
        if self.local:
            self._backend = _LocalBackend(_local_root(self.archive_to))
        else:
            scheme, rest = self.archive_to.split("://", 1)
            if not scheme or not rest.strip("/"):
                raise ArchiveDestinationError(f"archive_to: {self.archive_to!r} names no bucket or container")
            self._backend = _ObjectBackend(f"{scheme}://{rest.rstrip('/')}", self.conn_id)

    def __repr__(self) -> str:
        return f"ArchiveStore({self.archive_to!r}, conn_id={self.conn_id!r})"

    def url(self, key: str) -> str:
        """Where a key is: a local path, or the object's URL."""
        return self._backend.url(check_key(key))

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def upload(self, key: str) -> Iterator[ArchiveUpload]:
        """Write one archive: yields a binary sink; on a clean exit the file is committed,
        read back and compared, and its sidecar written (``upload.result`` is then set).

        On an exception inside the block nothing is committed (a local temporary file is
        removed, an object upload aborted) and the exception goes on. Any sidecar of an
        earlier archive of the same key is removed first, so the key never counts as archived
        while it is being rewritten. Store failures raise :class:`ArchiveStorageError`; a
        read-back that differs raises :class:`ArchiveVerificationError`.
        """
        check_key(key)
        url = self.url(key)
        sidecar = key + SIDECAR_SUFFIX
        # Looked up first: a store that may not delete (a write-once bucket) can still take
        # new archives; only rewriting a verified one needs the delete.
        if self._storage(f"look up {self.url(sidecar)}", self._backend.size, sidecar) is not None:
            self._storage(f"remove the old sidecar of {url}", self._backend.delete, sidecar)
        handle = self._storage(f"start writing {url}", self._backend.open_write, key)
        upload = ArchiveUpload(handle, key)
        try:
            yield upload
        except BaseException:
            handle.discard()
            raise
        self._commit(handle, url)
        written = upload.digest
        found = self._read_back(key)
        if not found.matches(written):
            raise ArchiveVerificationError(
                f"{url} reads back as {found.size} bytes with SHA-256 {found.sha256}, but "
                f"{written.size} bytes with SHA-256 {written.sha256} were written; it does not count as archived"
            )
        self.write_small(key + SIDECAR_SUFFIX, sidecar_text(written.sha256, key).encode())
        assert written.size is not None
        upload.result = ArchivedFile(key=key, url=url, size=written.size, sha256=written.sha256)

    def write_small(self, key: str, data: bytes) -> None:
        """Write a small file whole (a sidecar, a manifest part): complete or not at all."""
        check_key(key)
        url = self.url(key)
        handle = self._storage(f"start writing {url}", self._backend.open_write, key)
        try:
            handle.write(data)
        except BaseException as exc:
            handle.discard()
            if isinstance(exc, Exception):
                raise ArchiveStorageError(f"cannot write {url}: {_describe(exc)}") from exc
            raise
        self._commit(handle, url)

    def _commit(self, handle: _Handle, url: str) -> None:
        try:
            handle.commit()
        except BaseException as exc:
            handle.discard()
            if isinstance(exc, Exception):
                raise ArchiveStorageError(
                    f"cannot finish writing {url}{self._conn_note()}: {_describe(exc)}"
                ) from exc
            raise

    def append(self, key: str, data: bytes) -> None:
        """Append to a local file, flushed to disk before returning (local folders only)."""
        check_key(key)
        if not isinstance(self._backend, _LocalBackend):
            raise ArchiveStorageError(f"{self.archive_to} is an object store: objects cannot be appended to")
        self._storage(f"append to {self.url(key)}", self._backend.append, key, data)

    def delete(self, key: str) -> None:
        """Remove a file (an archive's sidecar first, so it stops counting; then the file)."""
        check_key(key)
        self._storage(f"delete {self.url(key)}", self._backend.delete, key)

    # -- reading -----------------------------------------------------------------------------

    def read_small(self, key: str) -> bytes | None:
        """A small file's bytes, or ``None`` when there is none."""
        check_key(key)
        return self._storage(f"read {self.url(key)}", self._backend.read_small, key)

    def size(self, key: str) -> int | None:
        check_key(key)
        return self._storage(f"look up {self.url(key)}", self._backend.size, key)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[Any]:
        """A binary file to read (for tools and tests: an archive is a gzip file)."""
        check_key(key)
        with self._storage(f"open {self.url(key)}", self._backend.open_read, key) as handle:
            yield handle

    def _read_back(self, key: str) -> Digest:
        def read() -> Digest:
            with self._backend.open_read(key) as handle:
                return digest_of_stream(handle.read, chunk_size=READ_CHUNK)

        return self._storage(f"read back {self.url(key)}", read)

    # -- verification ------------------------------------------------------------------------

    def expected_digest(self, key: str) -> Digest | None:
        """The checksum an archive's sidecar records, or ``None`` (no sidecar, or unreadable)."""
        text = self.read_small(key + SIDECAR_SUFFIX)
        if text is None:
            return None
        try:
            return Digest(None, parse_sidecar(text.decode("utf-8", "replace")))
        except ValueError:
            return None

    def verify(self, key: str, expected: Digest | None = None) -> Verification:
        """Whether ``key`` holds a complete, verified archive (see :class:`Verification`).

        ``expected`` (a manifest's size and SHA-256, say) replaces the sidecar as the
        reference; without it, the sidecar is the reference and its absence means the
        archive was never verified. The size is checked first, then the file is read back.
        Store failures raise :class:`ArchiveStorageError`: "cannot tell" is not "missing".
        """
        url = self.url(key)
        size = self.size(key)
        if size is None:
            return Verification(key, url, MISSING, "no archive file", expected)
        reference = expected or self.expected_digest(key)
        if reference is None:
            return Verification(
                key, url, UNVERIFIED, "the file has no readable .sha256 sidecar: it was never verified"
            )
        if reference.size is not None and reference.size != size:
            return Verification(key, url, MISMATCH, f"{size} bytes instead of {reference.size}", reference)
        actual = self._read_back(key)
        if not reference.matches(actual):
            return Verification(
                key,
                url,
                MISMATCH,
                f"SHA-256 {actual.sha256} ({actual.size} bytes) instead of {reference.sha256}",
                reference,
                actual,
            )
        return Verification(key, url, VERIFIED, "read back and matched", reference, actual)

    def exists_and_verifies(self, key: str, expected: Digest | None = None) -> bool:
        """Whether ``key`` is archived: present and matching ``expected`` or its sidecar."""
        return self.verify(key, expected).ok

    # -- destination check -------------------------------------------------------------------

    def check_writable(self) -> None:
        """Write, read back and remove a small file under ``archive_to``, or raise
        :class:`ArchiveDestinationError` saying why not (the message starts ``archive_to:``)."""
        probe = b"airflow-provider-recordings write check\n"
        try:
            if self.local:
                assert isinstance(self._backend, _LocalBackend)
                self._backend.root.mkdir(parents=True, exist_ok=True)
            else:
                self._check_filesystem()
            handle = self._backend.open_write(WRITE_CHECK)
            try:
                handle.write(probe)
            except BaseException:
                handle.discard()
                raise
            handle.commit()
            if self._backend.read_small(WRITE_CHECK) != probe:
                raise ArchiveDestinationError(
                    f"archive_to: {self.archive_to!r} does not read back what was written to it"
                )
        except ArchiveDestinationError:
            raise
        except Exception as exc:
            raise ArchiveDestinationError(
                f"archive_to: cannot write to {self.archive_to!r}{self._conn_note()}: {_describe(exc)}"
            ) from exc
        # A store may allow writes but not deletes (write-once buckets): the fixed name
        # keeps that to one small object.
        with contextlib.suppress(Exception):
            self._backend.delete(WRITE_CHECK)

    def _check_filesystem(self) -> None:
        """That Airflow has a filesystem for the scheme (the ``s3`` extra for ``s3://``)."""
        scheme = self.archive_to.split("://", 1)[0].lower()
        try:
            filesystem = self._backend.storage_path(WRITE_CHECK).fs  # type: ignore[union-attr]
            if filesystem is None:
                raise ValueError(f"no filesystem for {scheme}://")
        except (ImportError, ValueError) as exc:
            hint = (
                " (pip install 'airflow-provider-recordings[s3]' installs the Amazon provider and s3fs)"
                if scheme in ("s3", "s3a")
                else f" (install the Airflow provider that handles {scheme}://)"
            )
            raise ArchiveDestinationError(
                f"archive_to: Airflow has no filesystem for {scheme}://{hint}: {_describe(exc)}"
            ) from exc

    def _conn_note(self) -> str:
        return f" (connection {self.conn_id!r})" if self.conn_id else ""

    # -- internals ---------------------------------------------------------------------------

    def _storage(self, action: str, function: Any, *args: Any) -> Any:
        """Run a store operation; its failures become :class:`ArchiveStorageError`."""
        try:
            return function(*args)
        except (ArchiveStorageError, ArchiveDestinationError, ArchiveKeyError):
            raise
        except Exception as exc:
            raise ArchiveStorageError(f"cannot {action}{self._conn_note()}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """An exception as a short message: its type and text (never a credential: neither
    botocore nor fsspec puts keys in messages)."""
    text = str(exc).strip() or repr(exc)
    if isinstance(exc, FileNotFoundError):
        return f"not found ({text}): does the bucket or folder exist?"
    if isinstance(exc, PermissionError):
        return f"permission denied ({text})"
    return f"{type(exc).__name__}: {text}"


def check_writable(archive_to: str, *, conn_id: str | None = None) -> ArchiveStore:
    """Check that ``archive_to`` can take archives before the first PostHog request.

    Raises :class:`ArchiveDestinationError` (a
    :class:`~airflow_provider_recordings.core.errors.PostHogConfigError`; the message starts
    with ``archive_to:``) for a malformed value, a scheme Airflow has no filesystem for, a
    missing bucket, a connection refused or a store that refuses writes. Returns the store.
    """
    store = ArchiveStore(archive_to, conn_id=conn_id)
    store.check_writable()
    return store

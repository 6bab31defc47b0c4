"""Content-addressed blob storage for artifacts, behind one small interface.

A blob is named by the sha256 of its bytes, so an upload is checksummed by
construction, two uploads of the same bytes are stored once, and a reader
can verify what it got against the name. `LocalBlobStore` keeps blobs in a
directory on the server (the default); `open_blob_store` also takes an
fsspec URL (e.g. `s3://bucket/prefix` with s3fs installed), so a pool can keep
artifacts in S3-compatible object storage without other code changing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .domain.errors import Invalid, NotFound, PayloadTooLarge

CHUNK_BYTES = 1 << 20
_SHA256 = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size_bytes: int


def check_sha256(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= _SHA256:
        raise Invalid(f"not a sha256 hex digest: {sha256[:80]!r}")
    return sha256


class BlobWriter:
    """Receives one upload in chunks, hashing as it goes; `commit` names it by its hash.

    Refuses more than `max_bytes` (413) and, if the uploader declared the
    sha256 it expects, a body that does not match it (the bytes were
    damaged on the way).
    """

    def __init__(self, store: BlobStore, max_bytes: int, expected_sha256: str | None) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._expected = check_sha256(expected_sha256) if expected_sha256 else None
        self._hash = hashlib.sha256()
        self._size = 0
        self._file: IO[bytes] = store.temp_file()

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise PayloadTooLarge(
                f"the artifact is larger than the {self._max_bytes:,} bytes allowed",
                max_bytes=self._max_bytes,
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> BlobInfo:
        sha256 = self._hash.hexdigest()
        if self._expected is not None and sha256 != self._expected:
            raise Invalid(
                f"the upload's sha256 is {sha256}, not the {self._expected} declared: "
                "the bytes were damaged on the way; upload again",
                sha256=sha256,
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._store.adopt(Path(self._file.name), sha256)
        return BlobInfo(sha256, self._size)

    def abort(self) -> None:
        self._file.close()
        Path(self._file.name).unlink(missing_ok=True)


def _read_range(blob: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    blob.seek(start)
    left = end - start
    while left > 0:
        chunk = blob.read(min(CHUNK_BYTES, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


class BlobStore(Protocol):
    def temp_file(self) -> IO[bytes]:
        """A local file an upload is written to before it has a name."""
        ...

    def adopt(self, temp: Path, sha256: str) -> None:
        """Store `temp`'s bytes as blob `sha256` (the caller computed the hash)."""
        ...

    def size(self, sha256: str) -> int:
        """The blob's size; NotFound if the store does not have it."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of the blob, in chunks."""
        ...

    def delete(self, sha256: str) -> None: ...


class LocalBlobStore:
    """Blobs in `root/sha256/ab/abcdef...` on the server's disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "incoming").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def writer(self, max_bytes: int, expected_sha256: str | None = None) -> BlobWriter:
        return BlobWriter(self, max_bytes, expected_sha256)

    def temp_file(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.root / "incoming", delete=False)

    def adopt(self, temp: Path, sha256: str) -> None:
        target = self.path(sha256)
        if target.exists():  # the same bytes are already stored
            temp.unlink(missing_ok=True)
            return
        target.parent.mkdir(exist_ok=True)
        os.replace(temp, target)

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} is missing from the store", sha256=sha256) from None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        end = self.size(sha256) if end is None else end
        with open(self.path(sha256), "rb") as blob:
            yield from _read_range(blob, start, end)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class FsspecBlobStore(LocalBlobStore):
    """Blobs under an fsspec URL (`s3://bucket/prefix`, `gs://...`); uploads stage locally.

    `options` go to the filesystem (e.g. `endpoint_url` for an S3-compatible server).
    """

    def __init__(self, url: str, staging: Path, **options: Any) -> None:
        import fsspec

        super().__init__(staging)
        self.fs, self.prefix = fsspec.core.url_to_fs(url, **options)
        self.prefix = self.prefix.rstrip("/")

    def key(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.prefix}/sha256/{sha256[:2]}/{sha256}"

    def adopt(self, temp: Path, sha256: str) -> None:
        try:
            if not self.fs.exists(self.key(sha256)):
                self.fs.put_file(str(temp), self.key(sha256))
        finally:
            temp.unlink(missing_ok=True)

    def size(self, sha256: str) -> int:
        try:
            return int(self.fs.size(self.key(sha256)))
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} is missing from the store", sha256=sha256) from None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        end = self.size(sha256) if end is None else end
        with self.fs.open(self.key(sha256), "rb") as blob:
            yield from _read_range(blob, start, end)

    def delete(self, sha256: str) -> None:
        self.fs.rm_file(self.key(sha256))


def open_blob_store(url: str, staging: Path, **options: Any) -> LocalBlobStore:
    """A plain directory path is a `LocalBlobStore`; a URL with a scheme goes to fsspec."""
    if "://" in url and not url.startswith("file://"):
        return FsspecBlobStore(url, staging, **options)
    return LocalBlobStore(Path(url.removeprefix("file://")).expanduser())

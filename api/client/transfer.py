"""Files to and from artifacts: tar packing, safe unpacking, sha256 of a file.

An artifact's bytes are a tar of a directory, so a checkpoint folder, an
exported model or a dataset travel the same way; unpacking refuses anything
but files and folders inside the target, so an archive cannot write
elsewhere on a donor's machine.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def pack(source: Path, archive: Path) -> None:
    """A tar of `source`: a directory's contents (paths relative to it, in a stable
    order), or one file at the archive's top."""
    with tarfile.open(archive, "w") as tar:
        if source.is_file():
            tar.add(source, arcname=source.name)
            return
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)


class UnsafeArchive(ValueError):
    """An archive member that could write outside its folder, or is not a file or folder."""


def unpack(archive: Path, directory: Path) -> None:
    """Extract files and folders only, all inside `directory`, owned by whoever unpacks.

    The checks of tarfile's `data` filter, done here because Python before
    3.11.4 (Debian 12's 3.11.2) does not have it: no absolute paths, no `..`
    out, no links, devices or fifos, no owner or set-id bits from the archive.
    """
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"{member.name!r}: an artifact holds only files and folders")
            if os.path.isabs(member.name) or not (root / member.name).resolve().is_relative_to(
                root
            ):
                raise UnsafeArchive(f"{member.name!r} points outside the artifact's folder")
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
            member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
        tar.extractall(directory, members=members)


def chunks(body: IO[bytes]) -> Iterator[bytes]:
    while chunk := body.read(CHUNK_BYTES):
        yield chunk

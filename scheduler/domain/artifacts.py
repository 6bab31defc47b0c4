"""What an artifact is, apart from where its bytes live: kinds, visibility, references.

An artifact is a versioned, content-addressed blob (a tar archive of a
directory: a checkpoint, an exported model, a dataset) that many jobs can
read. Names are pool-wide; versions are 1, 2, ... in publishing order, so
`digits@3` always means the same bytes (its sha256 is fixed at upload).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class ArtifactKind(StrEnum):
    MODEL = "model"
    DATASET = "dataset"


class Visibility(StrEnum):
    """Who may find and read an artifact (pool admins may always)."""

    PRIVATE = "private"  # its owner
    PROJECT = "project"  # members of its project
    PUBLIC = "public"  # any user of the pool


class InputRole(StrEnum):
    """How a job uses an artifact: training data, or the weights it starts from."""

    DATASET = "dataset"
    INIT = "init"


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
_REF = re.compile(rf"^(?P<name>{NAME_PATTERN})(?:@(?P<version>[1-9][0-9]{{0,8}}))?$")


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """`name@version`, or `name` alone for the newest version the caller may see."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ArtifactRef:
        match = _REF.match(text.strip())
        if match is None:
            raise ValueError(
                f"not an artifact reference: {text!r} (use NAME or NAME@VERSION, e.g. digits@2)"
            )
        version = match.group("version")
        return cls(match.group("name"), int(version) if version else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"

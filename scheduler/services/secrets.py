"""Secrets are random 256-bit values shown once and stored only as a SHA-256 hash.

A plain hash (not a slow KDF) is right for 256 random bits: there is nothing
to brute-force, and lookups by hash stay one indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()

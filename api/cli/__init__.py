"""The `commonpool` command line: a thin client of the REST API (plus the server processes)."""

from .main import app, main

__all__ = ["app", "main"]

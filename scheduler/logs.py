"""Structured logs (structlog): one event per line, with the job and node ids it concerns.

`console` (the default) is for people at a terminal; `json` is for log shippers
(Loki, Elasticsearch, journald + jq): every line one JSON object with `event`,
`level`, `timestamp` (UTC, ISO 8601) and the event's ids, e.g.
`{"event": "job.placed", "job_id": "job_...", "node_ids": ["node_..."], ...}`.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["console", "json"]


def configure_logging(
    fmt: LogFormat = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """Set up structlog for this process (the server, the scheduler); idempotent.

    Lines go to `stream` (default stderr; an all-in-one pool sends them to its log file,
    so they do not break into the demo's progress display).
    """
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(component: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(component=component)  # type: ignore[no-any-return]

"""The one error vocabulary of commonpool.

Raised anywhere (services, store, loop) and mapped to RFC 9457 problem
responses once, in `commonpool.api.problems`. Each class has a stable
kebab-case `code` that the API client maps back to the same class.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CommonpoolError(Exception):
    """Base of every domain error; `fields` travel into the problem body."""

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class NotFound(CommonpoolError):
    code = "not-found"
    title = "Not found"


class Conflict(CommonpoolError):
    code = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    """A state change the state machine does not allow, or that lost a race."""

    code = "invalid-transition"
    title = "Invalid state transition"

    def __init__(self, entity: str, entity_id: str, current: str, target: str) -> None:
        super().__init__(
            f"{entity} {entity_id} is {current}; it cannot become {target}",
            entity=entity,
            id=entity_id,
            current=current,
            target=target,
        )


class StaleLease(Conflict):
    """A write fenced off because it carries an old lease epoch."""

    code = "stale-lease"
    title = "Stale lease epoch"


class Invalid(CommonpoolError):
    """Input that is well-formed but makes no sense (e.g. a job no node could ever fit)."""

    code = "invalid"
    title = "Invalid request"


class Unauthorized(CommonpoolError):
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(CommonpoolError):
    code = "forbidden"
    title = "Forbidden"


class QuotaExceeded(Forbidden):
    code = "quota-exceeded"
    title = "Quota exceeded"


class PayloadTooLarge(CommonpoolError):
    """A body (e.g. an artifact upload) over the size the server accepts for it."""

    code = "payload-too-large"
    title = "Payload too large"


class RangeNotSatisfiable(CommonpoolError):
    """A byte range (resuming a download) that starts past the end of the content."""

    code = "range-not-satisfiable"
    title = "Range not satisfiable"


class QueueQuotaExceeded(CommonpoolError):
    """The project has as many jobs waiting as its quota allows; retry when some start."""

    code = "queue-quota-exceeded"
    title = "Too many queued jobs"


class RateLimited(CommonpoolError):
    """Too many requests from one credential; `retry_after_s` says when to try again."""

    code = "rate-limited"
    title = "Too many requests"


class Unavailable(CommonpoolError):
    """A dependency (the database, Ray) cannot be reached right now."""

    code = "unavailable"
    title = "Service unavailable"


ALL_ERRORS: tuple[type[CommonpoolError], ...] = (
    CommonpoolError,
    NotFound,
    Conflict,
    InvalidTransition,
    StaleLease,
    Invalid,
    Unauthorized,
    Forbidden,
    QuotaExceeded,
    PayloadTooLarge,
    RangeNotSatisfiable,
    QueueQuotaExceeded,
    RateLimited,
    Unavailable,
)

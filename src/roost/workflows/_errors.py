"""Roost errors across the activity boundary, and the retry policy that follows from them.

An activity raises :class:`~temporalio.exceptions.ApplicationError` whose ``type`` is the
roost error code and whose ``non_retryable`` flag comes from the code: transient faults
(timeouts, no responders, unavailable, rate limits, upstream 5xx) are retried with backoff,
terminal ones (invalid request, not found, auth, agent failures) fail the call at once. The
workflow turns the failure back into the same :class:`~roost.protocol.RoostError`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

from roost.protocol import ErrorInfo, RoostError, ServiceTimeoutError
from roost.protocol._errors import (
    AGENT_FAILED,
    AUTH,
    INTERNAL,
    INVALID_MESSAGE,
    INVALID_REQUEST,
    NOT_FOUND,
    RETRYABLE_CODES,
    UNKNOWN_OP,
)

TERMINAL_CODES = (INVALID_MESSAGE, INVALID_REQUEST, NOT_FOUND, UNKNOWN_OP, AUTH, AGENT_FAILED)


def retry_policy(max_attempts: int) -> RetryPolicy:
    """Backoff from 0.5 s doubling to 10 s; terminal roost codes are never retried."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=0.5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=max_attempts,
        non_retryable_error_types=list(TERMINAL_CODES),
    )


def to_application_error(exc: BaseException) -> ApplicationError:
    """The activity failure for ``exc`` (roost errors keep their code and retryability)."""
    if isinstance(exc, RoostError):
        return ApplicationError(
            exc.message,
            exc.details,
            type=exc.code,
            non_retryable=exc.code not in RETRYABLE_CODES,
        )
    # Unexpected failures (a database hiccup, a bug) are retried: the attempts are bounded.
    return ApplicationError(f"{type(exc).__name__}: {exc}", type=INTERNAL)


def from_activity_error(err: ActivityError | ApplicationError, what: str) -> RoostError:
    """The roost error behind a failed activity (``what``: the call, for messages).

    Activities fail with :class:`ActivityError` wrapping the cause; local activities may
    raise the cause itself.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, CancelledError):
        raise asyncio.CancelledError()
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        info = ErrorInfo(code=cause.type or INTERNAL, message=cause.message, details=details)
        return RoostError.from_info(info)
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower() if cause.type is not None else "timeout"
        return ServiceTimeoutError(f"{what} timed out ({kind})")
    return RoostError(f"{what} failed: {cause or err}")

"""Roost errors across the activity boundary, and the retry policy that follows from them.

An activity raises :class:`~temporalio.exceptions.ApplicationError` whose ``type`` is the
roost error code and whose ``non_retryable`` flag comes from the code
(:attr:`ErrorCode.retryable <roost.protocol.ErrorCode>`, the one table): transient faults
(timeouts, no responders, unavailable, rate limits, upstream 5xx) are retried with backoff,
terminal ones (invalid request, not found, auth, agent failures, ...) fail the call at once,
and the retry policy lists every non-retryable code as a non-retryable error type. A code
unknown to this roost is not retried.

A plain exception (not a :class:`~roost.protocol.RoostError`: a database hiccup, a bug) is
retried: it fails the attempt as ``unexpected``, a retryable code, and the attempts are
bounded. Once they are spent the workflow sees it as ``internal``. The workflow turns every
failure back into the same :class:`~roost.protocol.RoostError`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

from roost.protocol import (
    NON_RETRYABLE_CODES,
    ErrorCode,
    ErrorInfo,
    RoostError,
    ServiceTimeoutError,
)

TERMINAL_CODES: tuple[ErrorCode, ...] = NON_RETRYABLE_CODES
"""The codes never retried: every :class:`~roost.protocol.ErrorCode` that is not retryable."""


def retry_policy(max_attempts: int) -> RetryPolicy:
    """Backoff from 0.5 s doubling to 10 s; terminal roost codes are never retried."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=0.5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=max_attempts,
        non_retryable_error_types=[str(code) for code in TERMINAL_CODES],
    )


def to_application_error(exc: BaseException) -> ApplicationError:
    """The activity failure for ``exc`` (roost errors keep their code and retryability)."""
    if isinstance(exc, RoostError):
        return ApplicationError(
            exc.message,
            exc.details,
            type=str(exc.code),
            non_retryable=not exc.retryable,
        )
    # Unexpected failures (a database hiccup, a bug) are retried: the attempts are bounded.
    return ApplicationError(f"{type(exc).__name__}: {exc}", type=str(ErrorCode.UNEXPECTED))


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
        code = cause.type or ErrorCode.INTERNAL
        if code == ErrorCode.UNEXPECTED:  # its retries are spent: now it is a plain failure
            code = ErrorCode.INTERNAL
        info = ErrorInfo(code=code, message=cause.message, details=details)
        return RoostError.from_info(info)
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower() if cause.type is not None else "timeout"
        return ServiceTimeoutError(f"{what} timed out ({kind})")
    return RoostError(f"{what} failed: {cause or err}")

"""Errors of the roost protocol: stable codes plus one exception type per family."""

from __future__ import annotations

from typing import Any

from roost.protocol._messages import ErrorInfo

# Stable error codes carried on the wire. ``retryable`` codes describe transient faults.
INVALID_MESSAGE = "invalid_message"
INVALID_REQUEST = "invalid_request"
NOT_FOUND = "not_found"
UNKNOWN_OP = "unknown_op"
TIMEOUT = "timeout"
NO_RESPONDERS = "no_responders"
UNAVAILABLE = "unavailable"
RATE_LIMITED = "rate_limited"
UPSTREAM = "upstream_error"
AUTH = "auth"
AGENT_FAILED = "agent_failed"
CANCELLED = "cancelled"
INTERNAL = "internal"

RETRYABLE_CODES = frozenset({TIMEOUT, NO_RESPONDERS, UNAVAILABLE, RATE_LIMITED, UPSTREAM})


class RoostError(Exception):
    """Base of every error roost raises on purpose; ``code`` is a stable wire code."""

    code: str = INTERNAL

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code, message=self.message, retryable=self.retryable, details=self.details
        )

    @staticmethod
    def from_info(info: ErrorInfo) -> RoostError:
        """Rebuild the most specific exception for a wire error."""
        cls = _BY_CODE.get(info.code, RoostError)
        err = cls(info.message, code=info.code, **info.details)
        return err


class ProtocolError(RoostError):
    """A message could not be decoded or failed validation."""

    code = INVALID_MESSAGE


class InvalidRequestError(RoostError):
    """A request was well-formed on the wire but its body is not valid for the operation."""

    code = INVALID_REQUEST


class NotFoundError(RoostError):
    """The named agent, model, session, node, key or secret does not exist."""

    code = NOT_FOUND


class ServiceTimeoutError(RoostError):
    """A request got no answer within its timeout (the responder may be dead or busy)."""

    code = TIMEOUT


class NoRespondersError(RoostError):
    """Nothing serves the subject: the service is not running."""

    code = NO_RESPONDERS


class ServiceUnavailableError(RoostError):
    """A service or an upstream engine is temporarily unavailable."""

    code = UNAVAILABLE


class UpstreamError(RoostError):
    """An upstream engine (Ollama, an OpenAI-compatible API) failed."""

    code = UPSTREAM


class AgentError(RoostError):
    """The agent's own code failed."""

    code = AGENT_FAILED


_BY_CODE: dict[str, type[RoostError]] = {
    INVALID_MESSAGE: ProtocolError,
    INVALID_REQUEST: InvalidRequestError,
    UNKNOWN_OP: InvalidRequestError,
    NOT_FOUND: NotFoundError,
    TIMEOUT: ServiceTimeoutError,
    NO_RESPONDERS: NoRespondersError,
    UNAVAILABLE: ServiceUnavailableError,
    RATE_LIMITED: ServiceUnavailableError,
    UPSTREAM: UpstreamError,
    AGENT_FAILED: AgentError,
}

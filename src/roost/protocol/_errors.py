"""Errors of the roost protocol: one registry of stable codes plus one exception per family.

Every code roost puts on the wire, or on an exception, is a member of :class:`ErrorCode`, and
each member says whether it is retryable (a transient fault: the same call may succeed later).
Everything that decides about retries or maps codes derives from that one table:
:attr:`RoostError.retryable`, the Temporal retry policy (``roost.workflows``), the gRPC status
mapping (``roost.rpc``) and :meth:`RoostError.from_info`.

The hierarchy (the code in brackets; the classes below ``AgentError`` live in the packages
that raise them, and come back from the wire as a plain ``RoostError`` with their code)::

    Exception
    └── RoostError                  [internal by default; any code can be given]
        ├── ProtocolError           [invalid_message]
        ├── InvalidRequestError     [invalid_request, unknown_op]
        ├── NotFoundError           [not_found]
        ├── ServiceTimeoutError     [timeout]                     retryable
        ├── NoRespondersError       [no_responders]               retryable
        ├── ServiceUnavailableError [unavailable, rate_limited]   retryable
        ├── UpstreamError           [upstream_error]              retryable
        ├── AgentError              [agent_failed]
        ├── stores.SecretKeyError   [auth]
        ├── runtime AuthError       [auth]  (the agent provider's bearer token)
        ├── config.ConfigError      [invalid_config]
        ├── daemon PlanError        [invalid_config]
        ├── agents.BundleError      [invalid_request]
        └── agents.ManifestError    [invalid_manifest]
            └── agents.DependencyError

Codes without a class of their own travel on a plain ``RoostError``: ``tool_failed``,
``engine_missing``, ``engine_start_failed``, ``engine_crash_loop``, ``cancelled``,
``internal``, ``unexpected``.

Two edge cases, decided here:

* An unknown code from the wire (a newer peer) is kept: :meth:`RoostError.from_info` gives a
  plain :class:`RoostError` carrying that code, and it is not retryable.
* A plain Python exception (not a :class:`RoostError`) is a bug or a hiccup. Services and RPC
  handlers report it as ``internal`` (not retryable); inside a workflow activity it fails the
  attempt as ``unexpected``, which *is* retried (the attempts are bounded), and once they are
  spent the workflow sees it as ``internal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from roost.protocol._messages import ErrorInfo


class ErrorCode(StrEnum):
    """The stable error codes of roost; each member is ``"wire_value", retryable``."""

    retryable: bool
    """Whether the fault is transient: the same call may succeed if tried again later."""

    def __new__(cls, value: str, retryable: bool) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.retryable = retryable
        return member

    INVALID_MESSAGE = "invalid_message", False
    """A message could not be decoded or failed validation."""
    INVALID_REQUEST = "invalid_request", False
    """A well-formed request whose body is not valid for the operation (or a bad bundle)."""
    INVALID_CONFIG = "invalid_config", False
    """The configuration is invalid, or asks for something this node cannot run."""
    INVALID_MANIFEST = "invalid_manifest", False
    """An agent manifest or its dependency declarations are invalid (or cannot be installed)."""
    NOT_FOUND = "not_found", False
    """The named agent, model, session, node, key or secret does not exist."""
    UNKNOWN_OP = "unknown_op", False
    """The service does not implement the operation (an older or other peer)."""
    AUTH = "auth", False
    """Missing or wrong credentials: a secret key, an API key, a bearer token."""
    TIMEOUT = "timeout", True
    """A request got no answer within its timeout (the responder may be dead or busy)."""
    NO_RESPONDERS = "no_responders", True
    """Nothing serves the subject: the service is not running (yet)."""
    UNAVAILABLE = "unavailable", True
    """A service or an upstream engine is temporarily unavailable."""
    RATE_LIMITED = "rate_limited", True
    """An upstream API refused the call for now (HTTP 429)."""
    UPSTREAM = "upstream_error", True
    """An upstream engine (Ollama, an OpenAI-compatible API) failed."""
    AGENT_FAILED = "agent_failed", False
    """The agent's own code failed."""
    TOOL_FAILED = "tool_failed", False
    """A tool the agent called answered with an error."""
    ENGINE_MISSING = "engine_missing", False
    """An engine's optional package is not installed."""
    ENGINE_START_FAILED = "engine_start_failed", False
    """An isolated engine process could not start (or load its model)."""
    ENGINE_CRASH_LOOP = "engine_crash_loop", False
    """An isolated engine process keeps crashing, so it is not restarted for a while."""
    PAYLOAD_TOO_LARGE = "payload_too_large", False
    """A value is larger than the path it would travel can carry."""
    CANCELLED = "cancelled", False
    """The run or call was cancelled."""
    INTERNAL = "internal", False
    """A failure with no more specific code: a bug, or an error raised without a code."""
    UNEXPECTED = "unexpected", True
    """A plain exception inside a workflow activity (a database hiccup, a bug): retried."""


RETRYABLE_CODES: frozenset[ErrorCode] = frozenset(code for code in ErrorCode if code.retryable)
"""The retryable codes (derived from :class:`ErrorCode`)."""
NON_RETRYABLE_CODES: tuple[ErrorCode, ...] = tuple(c for c in ErrorCode if not c.retryable)
"""The codes that are never retried, in declaration order (derived from :class:`ErrorCode`)."""


def is_retryable(code: str) -> bool:
    """Whether ``code`` is a transient fault; unknown codes are not."""
    return code in RETRYABLE_CODES


# Aliases of the members, for code written before ErrorCode.
INVALID_MESSAGE = ErrorCode.INVALID_MESSAGE
INVALID_REQUEST = ErrorCode.INVALID_REQUEST
NOT_FOUND = ErrorCode.NOT_FOUND
UNKNOWN_OP = ErrorCode.UNKNOWN_OP
TIMEOUT = ErrorCode.TIMEOUT
NO_RESPONDERS = ErrorCode.NO_RESPONDERS
UNAVAILABLE = ErrorCode.UNAVAILABLE
RATE_LIMITED = ErrorCode.RATE_LIMITED
UPSTREAM = ErrorCode.UPSTREAM
AUTH = ErrorCode.AUTH
AGENT_FAILED = ErrorCode.AGENT_FAILED
CANCELLED = ErrorCode.CANCELLED
INTERNAL = ErrorCode.INTERNAL


class RoostError(Exception):
    """Base of every error roost raises on purpose; ``code`` is a stable wire code (normally
    an :class:`ErrorCode`; an unknown one from a newer peer is kept as it came)."""

    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    @property
    def retryable(self) -> bool:
        return is_retryable(self.code)

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code, message=self.message, retryable=self.retryable, details=self.details
        )

    @staticmethod
    def from_info(info: ErrorInfo) -> RoostError:
        """Rebuild the most specific exception for a wire error (its ``retryable`` flag
        follows from the code, not from the wire)."""
        return error_type(info.code)(info.message, code=info.code, **info.details)


class ProtocolError(RoostError):
    """A message could not be decoded or failed validation."""

    code = ErrorCode.INVALID_MESSAGE


class InvalidRequestError(RoostError):
    """A request was well-formed on the wire but its body is not valid for the operation."""

    code = ErrorCode.INVALID_REQUEST


class NotFoundError(RoostError):
    """The named agent, model, session, node, key or secret does not exist."""

    code = ErrorCode.NOT_FOUND


class ServiceTimeoutError(RoostError):
    """A request got no answer within its timeout (the responder may be dead or busy)."""

    code = ErrorCode.TIMEOUT


class NoRespondersError(RoostError):
    """Nothing serves the subject: the service is not running."""

    code = ErrorCode.NO_RESPONDERS


class PayloadTooLargeError(RoostError):
    """A value is larger than the path it would travel can carry (the message says which
    limit, and what to do instead)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class ServiceUnavailableError(RoostError):
    """A service or an upstream engine is temporarily unavailable."""

    code = ErrorCode.UNAVAILABLE


class UpstreamError(RoostError):
    """An upstream engine (Ollama, an OpenAI-compatible API) failed."""

    code = ErrorCode.UPSTREAM


class AgentError(RoostError):
    """The agent's own code failed."""

    code = ErrorCode.AGENT_FAILED


_BY_CODE: Mapping[str, type[RoostError]] = {
    **{cls.code: cls for cls in (
        ProtocolError, InvalidRequestError, NotFoundError, ServiceTimeoutError,
        NoRespondersError, ServiceUnavailableError, UpstreamError, AgentError,
    )},
    ErrorCode.UNKNOWN_OP: InvalidRequestError,
    ErrorCode.RATE_LIMITED: ServiceUnavailableError,
}  # fmt: skip
"""The exception :meth:`RoostError.from_info` rebuilds for a code; any other: ``RoostError``."""


def error_type(code: str) -> type[RoostError]:
    """The exception class a wire error with ``code`` becomes (``RoostError`` by default)."""
    return _BY_CODE.get(code, RoostError)

"""One registry of error codes: every code roost uses is an ErrorCode member, each member says
whether it is retryable, and every mapping (exception classes, Temporal, gRPC) follows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roost.agents import BundleError, DependencyError, ManifestError
from roost.config import ConfigError
from roost.protocol import (
    RETRYABLE_CODES,
    ErrorCode,
    ErrorInfo,
    InvalidRequestError,
    RoostError,
    ServiceTimeoutError,
    _errors,
)
from roost.protocol._errors import error_type

SRC = Path(__file__).resolve().parent.parent / "src" / "roost"

#: ``code="..."`` (a call's keyword) and ``code = "..."`` / ``code: str = "..."`` (a class
#: attribute), and the module constants named like ``*_CODE = "..."`` or ``ENGINE_* = "..."``.
_CODE_LITERAL = re.compile(
    r"""\bcode\s*(?::\s*[\w\[\] |]+)?=\s*["']([^"']+)["']"""
    r"""|\bErrorInfo\(\s*["']([^"']+)["']"""
)


def _codes_in_source() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if "_gen" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in _CODE_LITERAL.finditer(line):
                code = match.group(1) or match.group(2)
                found.setdefault(code, []).append(f"{path.relative_to(SRC)}:{number}")
    return found


def test_every_code_has_a_retryability_and_a_docstring() -> None:
    source = Path(_errors.__file__).read_text()
    for code in ErrorCode:
        assert isinstance(code.retryable, bool), code
        # the member's line is followed by its docstring line
        assert re.search(rf'{code.name} = "{code.value}", (True|False)\n\s+"""\S', source), code
    assert frozenset(c for c in ErrorCode if c.retryable) == RETRYABLE_CODES
    assert {
        ErrorCode.TIMEOUT,
        ErrorCode.NO_RESPONDERS,
        ErrorCode.UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.UPSTREAM,
        ErrorCode.UNEXPECTED,
    } == RETRYABLE_CODES


def test_every_code_used_in_the_source_is_registered() -> None:
    found = _codes_in_source()
    unknown = {code: where for code, where in found.items() if code not in set(ErrorCode)}
    assert not unknown, f"register these in roost.protocol.ErrorCode: {unknown}"


def test_the_source_scan_sees_literal_codes() -> None:
    # the scan above must not pass by matching nothing
    line = 'raise RoostError("x", code="tool_failed")\n    code: str = "auth"\nErrorInfo("x", "m")'
    assert [m.group(1) or m.group(2) for m in _CODE_LITERAL.finditer(line)] == [
        "tool_failed",
        "auth",
        "x",
    ]


def test_the_old_constants_are_the_members() -> None:
    assert _errors.TIMEOUT is ErrorCode.TIMEOUT and _errors.TIMEOUT.value == "timeout"
    assert _errors.UPSTREAM == "upstream_error" and _errors.INTERNAL is ErrorCode.INTERNAL
    assert "timeout" in RETRYABLE_CODES and "internal" not in RETRYABLE_CODES


@pytest.mark.parametrize("code", list(ErrorCode))
def test_round_trip_keeps_class_code_and_retryability(code: ErrorCode) -> None:
    cls = error_type(code)
    err = cls("it broke", code=code, node="n1")
    info = err.to_info()
    assert info.code == code and info.retryable is code.retryable
    back = RoostError.from_info(info)
    assert type(back) is cls and back.code == code and back.message == "it broke"
    assert back.details == {"node": "n1"} and back.retryable is code.retryable


def test_the_specific_classes_come_back() -> None:
    back = RoostError.from_info(ServiceTimeoutError("slow").to_info())
    assert type(back) is ServiceTimeoutError and back.retryable
    unknown_op = RoostError.from_info(ErrorInfo(code="unknown_op", message="no"))
    assert type(unknown_op) is InvalidRequestError and unknown_op.code == "unknown_op"


def test_an_unknown_wire_code_is_kept_and_not_retried() -> None:
    back = RoostError.from_info(ErrorInfo(code="from_the_future", message="new", retryable=True))
    assert type(back) is RoostError and back.code == "from_the_future"
    assert not back.retryable


def test_a_roost_error_without_a_code_is_internal_and_terminal() -> None:
    err = RoostError("no code")
    assert err.code == ErrorCode.INTERNAL and not err.retryable


@pytest.mark.parametrize(
    ("error", "cls", "code"),
    [
        (ConfigError("roost.toml: bad key"), ConfigError, ErrorCode.INVALID_CONFIG),
        (ManifestError("agent.toml", "name", "is empty"), ManifestError, "invalid_manifest"),
        (DependencyError("requirements.txt", "no such package"), DependencyError, None),
        (BundleError("/x is not a folder"), BundleError, ErrorCode.INVALID_REQUEST),
    ],
)
def test_user_facing_errors_are_roost_errors(
    error: RoostError, cls: type[RoostError], code: str | None
) -> None:
    assert isinstance(error, RoostError) and type(error) is cls and not error.retryable
    assert error.code == (code or ErrorCode.INVALID_MANIFEST)
    assert str(error) == error.message  # the one line the CLI prints
    assert "\n" not in str(error)


def test_the_plan_error_is_a_roost_error() -> None:
    from roost.daemon._plan import PlanError

    err = PlanError("no engine can serve")
    assert isinstance(err, RoostError) and err.code == ErrorCode.INVALID_CONFIG
    assert str(err) == "no engine can serve"


def test_the_manifest_message_is_unchanged() -> None:
    err = ManifestError("a/agent.toml", "entry", "is missing")
    assert str(err) == "a/agent.toml: field 'entry': is missing"
    assert (err.path, err.field, err.problem) == ("a/agent.toml", "entry", "is missing")


def test_the_temporal_non_retryable_list_is_every_non_retryable_code() -> None:
    pytest.importorskip("temporalio")
    from roost.workflows import TERMINAL_CODES, retry_policy

    policy = retry_policy(3)
    non_retryable = [c.value for c in ErrorCode if not c.retryable]
    assert policy.non_retryable_error_types == non_retryable
    assert list(TERMINAL_CODES) == non_retryable
    assert all(type(t) is str for t in policy.non_retryable_error_types)


def test_activity_errors_follow_the_table() -> None:
    pytest.importorskip("temporalio")
    from temporalio.exceptions import ApplicationError

    from roost.workflows._errors import from_activity_error, to_application_error

    for code in ErrorCode:
        app = to_application_error(error_type(code)("x", code=code))
        assert app.type == code and app.non_retryable is not code.retryable
        assert type(from_activity_error(app, "call")) is error_type(
            ErrorCode.INTERNAL if code is ErrorCode.UNEXPECTED else code
        )
    # a plain exception is retried (as "unexpected"), then surfaces as internal
    app = to_application_error(ValueError("boom"))
    assert app.type == "unexpected" and not app.non_retryable
    assert app.type not in retry_types()
    back = from_activity_error(ApplicationError(app.message, type=app.type), "call")
    assert type(back) is RoostError and back.code == "internal" and "ValueError: boom" in str(back)
    # a roost error with an unknown code is not retried
    assert to_application_error(RoostError("x", code="from_the_future")).non_retryable


def retry_types() -> list[str]:
    from roost.workflows import retry_policy

    return list(retry_policy(1).non_retryable_error_types or [])


def test_every_code_has_a_grpc_status() -> None:
    pytest.importorskip("grpc")
    import grpc

    from roost.rpc._errors import STATUS_BY_CODE, status_for

    assert set(STATUS_BY_CODE) == set(ErrorCode)
    assert status_for(RoostError("x", code="from_the_future")) == grpc.StatusCode.INTERNAL


def test_every_code_has_an_http_status_at_the_provider() -> None:
    from roost.wire import STATUS_BY_CODE as _STATUS_BY_CODE
    from roost.wire import status_for

    assert set(_STATUS_BY_CODE) == set(ErrorCode)
    bad_input = [c for c in ErrorCode if c.startswith("invalid_") or c == "not_found"]
    assert all(400 <= status_for(RoostError("x", code=c)) < 500 for c in bad_input)
    assert status_for(RoostError("x", code="from_the_future")) == 500

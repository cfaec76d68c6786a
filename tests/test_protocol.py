"""The wire protocol: every message kind round-trips; anything else is a precise error."""

from __future__ import annotations

import msgspec
import pytest

from roost.bus import subject_matches
from roost.protocol import (
    PROTOCOL_VERSION,
    ChatMessage,
    ChatRequest,
    CompleteMessage,
    ErrorInfo,
    EventMessage,
    ForkMessage,
    InvalidRequestError,
    InvokeMessage,
    KvPut,
    KvValue,
    Message,
    PromoteMessage,
    ProtocolError,
    RequestMessage,
    ResponseMessage,
    TraceContext,
    Usage,
    decode,
    encode,
    from_body,
    subjects,
    to_body,
)

ALL_BYTES = bytes(range(256))
TRACE = TraceContext(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

MESSAGES: list[Message] = [
    InvokeMessage(
        agent="echo",
        input={"prompt": "hé ✓", "n": [1, 2.5, None, True]},
        session="s1",
        correlation_id="c1",
        trace=TRACE,
        metadata={"user": "u"},
    ),
    RequestMessage(
        service="infer",
        op="chat",
        body=to_body(ChatRequest(model="m", messages=[ChatMessage(role="user", content="hi")])),
        agent="echo",
        session="s1",
        branch="b2",
        timeout_s=3.5,
    ),
    ResponseMessage(body={"answer": 42}, correlation_id="r1", duration_ms=1.25),
    ResponseMessage(
        ok=False,
        correlation_id="r2",
        error=ErrorInfo(code="timeout", message="slow", retryable=True, details={"s": 1}),
    ),
    CompleteMessage(agent="echo", output=["done"], usage=Usage(3, 4), correlation_id="i1"),
    ForkMessage(session="s1", from_node="n" * 64, new_branch="alt"),
    PromoteMessage(session="s1", branch="alt"),
    EventMessage(type="token", agent="echo", session="s1", data={"text": "tok"}),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_kind_round_trips(message: Message) -> None:
    data = encode(message)
    assert isinstance(data, bytes)
    decoded = decode(data)
    assert type(decoded) is type(message)
    assert decoded == message
    # Decoding as the expected type gives the same result.
    assert decode(data, type(message)) == message
    assert decoded.version == PROTOCOL_VERSION
    assert decoded.id and decoded.id == message.id


def test_kinds_are_tagged_on_the_wire() -> None:
    kinds = {type(m).__name__: msgspec.json.decode(encode(m))["kind"] for m in MESSAGES}
    assert kinds == {
        "InvokeMessage": "invoke",
        "RequestMessage": "request",
        "ResponseMessage": "response",
        "CompleteMessage": "complete",
        "ForkMessage": "fork",
        "PromoteMessage": "promote",
        "EventMessage": "event",
    }


def test_every_message_gets_a_fresh_id_and_timestamp() -> None:
    a, b = PromoteMessage(), PromoteMessage()
    assert a.id != b.id
    assert len(a.id) == 32
    assert a.timestamp > 1.7e9


def test_typed_bytes_payload_is_binary_safe() -> None:
    request = RequestMessage(service="kv", op="put", body=to_body(KvPut(key="k", value=ALL_BYTES)))
    decoded = decode(encode(request), RequestMessage)
    assert from_body(decoded.body, KvPut).value == ALL_BYTES

    response = ResponseMessage(body=to_body(KvValue(found=True, value=b"\x00\xff" * 1000)))
    got = from_body(decode(encode(response), ResponseMessage).body, KvValue)
    assert got.found and got.value == b"\x00\xff" * 1000


@pytest.mark.parametrize(
    "message",
    [
        InvokeMessage(agent="a", input={"blob": ALL_BYTES}),
        ResponseMessage(body={"blob": ALL_BYTES}),
        CompleteMessage(output={"blob": ALL_BYTES}),
        EventMessage(type="log", data={"blob": ALL_BYTES}),
    ],
    ids=lambda m: type(m).__name__,
)
def test_raw_bytes_in_untyped_bodies_survive(message: Message) -> None:
    """Bytes in free-form fields travel as base64 and convert back losslessly."""
    decoded = decode(encode(message))
    holder = msgspec.structs.asdict(decoded)
    value = next(v for v in holder.values() if isinstance(v, dict) and "blob" in v)["blob"]
    assert isinstance(value, str)  # JSON has no bytes: base64 text on the wire
    assert msgspec.convert(value, bytes) == ALL_BYTES


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"garbage", "undecodable message"),
        (b"\xff\xfe\x00binary", "undecodable message"),
        (b"", "undecodable message"),
        (b'{"kind": "request", "service": "kv"', "undecodable message"),
        (b"[]", "Expected `object`, got `array`"),
        (b'{"op": "get"}', "missing required field `kind`"),
        (b'{"kind": "teleport", "agent": "a"}', "Invalid value 'teleport' - at `$.kind`"),
        (b'{"kind": "request", "op": "get"}', "missing required field `service`"),
        (b'{"kind": "invoke"}', "missing required field `agent`"),
        (b'{"kind": "request", "service": "kv", "op": 5}', "Expected `str`, got `int` - at `$.op`"),
        (b'{"kind": "request", "service": "nope", "op": "x"}', "at `$.service`"),
        (b'{"kind": "response", "ok": "yes"}', "Expected `bool`, got `str` - at `$.ok`"),
        (b'{"kind": "event", "type": "token", "timestamp": "noon"}', "at `$.timestamp`"),
    ],
)
def test_bad_input_is_a_protocol_error_naming_the_problem(data: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert expected in str(info.value)
    assert info.value.code == "invalid_message"
    assert not info.value.retryable


def test_wrong_kind_for_expected_type() -> None:
    data = encode(RequestMessage(service="kv", op="get"))
    with pytest.raises(ProtocolError, match=r"invalid ResponseMessage: .*'request'.*\$\.kind"):
        decode(data, ResponseMessage)


def test_from_body_rejects_bad_bodies_with_invalid_request() -> None:
    with pytest.raises(
        InvalidRequestError, match=r"invalid KvPut: .*missing required field `value`"
    ):
        from_body({"key": "k"}, KvPut)
    with pytest.raises(InvalidRequestError, match=r"invalid KvPut: Expected `str`, got `int`.*key"):
        from_body({"key": 3, "value": ""}, KvPut)
    with pytest.raises(InvalidRequestError, match=r"scope"):
        from_body({"key": "k", "value": "", "scope": "galaxy"}, KvPut)
    with pytest.raises(InvalidRequestError) as info:
        from_body({"key": "k", "value": "not base64!"}, KvPut)
    assert info.value.code == "invalid_request"


def test_error_info_round_trips_to_typed_exceptions() -> None:
    from roost.protocol import NoRespondersError, RoostError, ServiceTimeoutError

    for exc in (NoRespondersError("none", subject="x"), ServiceTimeoutError("slow", timeout=1.0)):
        info = decode(encode(ResponseMessage(ok=False, error=exc.to_info())), ResponseMessage).error
        assert info is not None
        rebuilt = RoostError.from_info(info)
        assert type(rebuilt) is type(exc)
        assert rebuilt.message == exc.message and rebuilt.details == exc.details
        assert rebuilt.retryable


def test_subjects_are_versioned() -> None:
    made = [
        subjects.service("infer"),
        subjects.service("infer", "ollama"),
        subjects.invoke(),
        subjects.events("sess1"),
        subjects.all_events(),
        subjects.session_op("fork"),
    ]
    assert subjects.PREFIX == "roost.v1"
    assert all(s.startswith("roost.v1.") for s in made), made
    assert subjects.service("kv") == "roost.v1.svc.kv"
    assert subjects.service("infer", "ollama") == "roost.v1.svc.infer.ollama"
    assert subject_matches(subjects.all_events(), subjects.events("sess1"))
    assert not subject_matches(subjects.all_events(), subjects.service("kv"))

"""The public API of roost's front packages is pinned: a name added or removed is a
deliberate change made here too (as httpx does). And the SDK stays light: agent code that
imports it loads no web framework, ORM or RPC library."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

ROOST = [
    "KV", "AgentContext", "AgentError", "ChatMessage", "ChatResult", "EmbedResult",
    "InvalidRequestError", "NoRespondersError", "NotFoundError", "ProtocolError", "RoostError",
    "ServiceTimeoutError", "ServiceUnavailableError", "ToolCall", "ToolSpec", "UpstreamError",
    "Usage", "VectorHit", "VectorItem", "Vectors", "__version__",
]  # fmt: skip
RUNTIME = [
    "EVENTS_STREAM", "KV", "AgentContext", "AgentResolver", "AgentRuntime", "BusDispatcher",
    "ChatRuntime", "Dispatcher", "EngineRouter", "EventCallback", "EventLog", "EventProjection",
    "Executor", "Harness", "HistoryLoader", "InProcessExecutor", "NullRecorder",
    "ProcessRuntime", "ProviderEndpoint", "PythonRuntime", "Recorder", "RunDefaults", "RunInfo",
    "RunResult", "RunStarted", "RunStatus", "RunWiring", "StateRecorder", "Vectors", "branch_history",
    "completion", "dispatch_request", "prompt_of", "run_agent",
]  # fmt: skip
PROTOCOL = [
    "CHAT_ENGINES", "EMBEDDED_ENGINES", "EMBEDDING_ENGINES", "ENGINE_NAMES", "EngineName",
    "NON_RETRYABLE_CODES", "PROTOCOL_VERSION", "REMOTE_ENGINES", "RETRYABLE_CODES", "AgentCall", "AgentCallResult", "AgentError",
    "AnyMessage", "ChatMessage", "ChatRequest", "ChatResult", "CompleteMessage", "EmbedRequest",
    "EmbedResult", "ErrorCode", "ErrorInfo", "EventMessage", "EventType", "ForkMessage",
    "InvalidRequestError", "InvokeMessage", "KvDelete", "KvGet", "KvList", "KvPut", "KvScope",
    "KvValue", "Message", "NoRespondersError", "NotFoundError", "PayloadTooLargeError", "PromoteMessage",
    "ProtocolError", "RequestMessage", "ResponseMessage", "RoostError", "ServiceName",
    "ServiceTimeoutError", "ServiceUnavailableError", "ToolCall", "ToolRequest", "ToolResult",
    "ToolSpec", "TraceContext", "UpstreamError", "Usage", "VecDelete", "VecResult", "VecSearch",
    "VecUpsert", "VectorHit", "VectorItem", "daemon", "decode", "dumps", "encode", "from_body", "loads",
    "new_id", "now", "subjects", "tenants", "to_body",
]  # fmt: skip

#: What agent code must not drag in by importing the SDK.
HEAVY = ("fastapi", "starlette", "uvicorn", "httpx", "sqlalchemy", "alembic", "grpc",
         "temporalio", "nats", "torch", "llama_cpp", "roost.stores", "roost.bus")  # fmt: skip


@pytest.mark.parametrize(
    ("module", "names"),
    [("roost", ROOST), ("roost.runtime", RUNTIME), ("roost.protocol", PROTOCOL)],
)
def test_all_is_pinned_and_every_name_resolves(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(names)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    assert set(mod.__all__) <= set(dir(mod))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import roost
    import roost.runtime

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = roost.Nope  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = roost.runtime.Nope  # type: ignore[attr-defined]


def test_the_sdk_types_are_the_protocol_and_runtime_types() -> None:
    import roost
    from roost.protocol import VectorItem
    from roost.runtime import AgentContext

    assert roost.VectorItem is VectorItem and roost.AgentContext is AgentContext


def test_importing_the_sdk_loads_no_web_framework_orm_or_rpc() -> None:
    code = (
        "import json, sys\n"
        "import roost\n"
        "from roost import AgentContext, RoostError, VectorItem, ChatResult\n"
        "from roost.runtime import AgentContext as Again\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []

"""Wire formats roost's HTTP servers speak to outside clients: the OpenAI API's shapes and
conversions, and the HTTP status and error body of every roost error code.

Framework-free (msgspec only), so every server (the provider endpoint, the API server) and
its tests share one definition.
"""

from roost.wire._errors import STATUS_BY_CODE, error_body, error_type, status_for
from roost.wire._openai import (
    ChatCompletionRequest,
    EmbeddingRequest,
    FunctionCallIn,
    FunctionDefIn,
    MessageIn,
    StreamOptionsIn,
    ToolCallIn,
    ToolIn,
    arguments_of,
    assistant_message,
    decode_body,
    encode_vector,
    finish_reason,
    messages_of,
    sse_events,
    stream_chunks,
    text_of,
    tool_calls_out,
    tools_of,
    usage_of,
)

__all__ = [
    "STATUS_BY_CODE",
    "ChatCompletionRequest",
    "EmbeddingRequest",
    "FunctionCallIn",
    "FunctionDefIn",
    "MessageIn",
    "StreamOptionsIn",
    "ToolCallIn",
    "ToolIn",
    "arguments_of",
    "assistant_message",
    "decode_body",
    "encode_vector",
    "error_body",
    "error_type",
    "finish_reason",
    "messages_of",
    "sse_events",
    "status_for",
    "stream_chunks",
    "text_of",
    "tool_calls_out",
    "tools_of",
    "usage_of",
]

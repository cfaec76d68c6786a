"""Test doubles that speak real wire protocols (see each module)."""

from fakes.llm_server import (
    DEFAULT_MODELS,
    FakeLLMServer,
    Fault,
    LoggedRequest,
    Reply,
    ToolCallReply,
    fake_embedding,
)

__all__ = [
    "DEFAULT_MODELS",
    "FakeLLMServer",
    "Fault",
    "LoggedRequest",
    "Reply",
    "ToolCallReply",
    "fake_embedding",
]

"""Roost: a Python runtime for AI agents.

Agent code programs against :class:`roost.AgentContext` and the SDK's types, all importable
from here::

    from roost import AgentContext, VectorItem, RoostError

    async def run(ctx: AgentContext, input: str) -> dict[str, str]:
        reply = await ctx.infer("Summarise: " + input)
        return {"summary": reply.message.content}

Everything else is the platform. Names load on first use (PEP 562), so ``import roost``
stays light and importing the SDK loads no web framework, ORM or RPC library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roost._lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from roost.protocol import (
        AgentError,
        ChatMessage,
        ChatResult,
        EmbedResult,
        InvalidRequestError,
        NoRespondersError,
        NotFoundError,
        ProtocolError,
        RoostError,
        ServiceTimeoutError,
        ServiceUnavailableError,
        ToolCall,
        ToolSpec,
        UpstreamError,
        Usage,
        VectorHit,
        VectorItem,
    )
    from roost.runtime import KV, AgentContext, Vectors

#: Where each public name lives: the SDK context, its payload types and its errors.
_MODULES: dict[str, str] = {
    "AgentContext": "roost.runtime._context",
    "KV": "roost.runtime._context",
    "Vectors": "roost.runtime._context",
    **dict.fromkeys(
        ("ChatMessage", "ChatResult", "EmbedResult", "ToolCall", "ToolSpec", "Usage",
         "VectorHit", "VectorItem"),
        "roost.protocol",
    ),
    **dict.fromkeys(
        ("RoostError", "AgentError", "InvalidRequestError", "NoRespondersError",
         "NotFoundError", "ProtocolError", "ServiceTimeoutError", "ServiceUnavailableError",
         "UpstreamError"),
        "roost.protocol",
    ),
}  # fmt: skip


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)


__all__ = [
    "KV",
    "AgentContext",
    "AgentError",
    "ChatMessage",
    "ChatResult",
    "EmbedResult",
    "InvalidRequestError",
    "NoRespondersError",
    "NotFoundError",
    "ProtocolError",
    "RoostError",
    "ServiceTimeoutError",
    "ServiceUnavailableError",
    "ToolCall",
    "ToolSpec",
    "UpstreamError",
    "Usage",
    "VectorHit",
    "VectorItem",
    "Vectors",
    "__version__",
]

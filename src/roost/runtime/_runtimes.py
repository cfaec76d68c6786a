"""Agent runtimes: how a deployed agent's code (or no code) turns input into output."""

from __future__ import annotations

import inspect
import json
from typing import Any, Protocol

from roost.agents import AgentManifest, load_entry
from roost.protocol import (
    AgentError,
    ChatMessage,
    RoostError,
    ToolSpec,
)
from roost.runtime._context import AgentContext
from roost.stores import AgentRecord


class AgentRuntime(Protocol):
    """Runs one invocation of a deployed agent."""

    async def run(self, ctx: AgentContext, agent: AgentRecord, manifest: AgentManifest) -> Any: ...

    async def close(self) -> None: ...


class PythonRuntime:
    """``runtime = "python"``: ``entry`` names ``async def fn(ctx, input)`` in the agent folder."""

    async def run(self, ctx: AgentContext, agent: AgentRecord, manifest: AgentManifest) -> Any:
        assert isinstance(manifest.entry, str)
        fn = load_entry(agent.path, manifest.entry, key=f"{agent.name}_v{agent.version}")
        result = fn(ctx, ctx.invocation.input)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def close(self) -> None:
        return None


def prompt_of(value: Any) -> str:
    """The user text of an invocation input: a string, or ``{"prompt": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        prompt = value.get("prompt")
        if isinstance(prompt, str):
            return prompt
    return json.dumps(value)


class ChatRuntime:
    """``runtime = "chat"``: a declarative agent (system prompt + model + tools).

    The loop asks the model, runs the tool calls it makes (results go back as ``tool``
    messages), and repeats until the model answers without tool calls or ``max_turns`` model
    calls were made. Earlier turns of the session branch are part of the conversation.
    """

    def __init__(self, *, max_turns: int = 8, max_tokens: int | None = 512) -> None:
        self.max_turns = max_turns
        self.max_tokens = max_tokens

    async def run(self, ctx: AgentContext, agent: AgentRecord, manifest: AgentManifest) -> Any:
        tools: list[ToolSpec] = []
        if manifest.tools:
            tools = await ctx.tool_specs()
        messages: list[ChatMessage] = []
        if manifest.system_prompt:
            messages.append(ChatMessage(role="system", content=manifest.system_prompt))
        for earlier_input, earlier_output in ctx.history:
            messages.append(ChatMessage(role="user", content=prompt_of(earlier_input)))
            messages.append(ChatMessage(role="assistant", content=str(earlier_output)))
        messages.append(ChatMessage(role="user", content=prompt_of(ctx.invocation.input)))

        max_turns = manifest.max_turns or self.max_turns
        for turn in range(1, max_turns + 1):
            result = await ctx.infer(messages, tools=tools, max_tokens=self.max_tokens, stream=True)
            reply = result.message
            messages.append(reply)
            if not reply.tool_calls:
                return reply.content
            for call in reply.tool_calls:
                await ctx.emit(f"calling tool {call.name}", tool=call.name, turn=turn)
                messages.append(
                    ChatMessage(
                        role="tool",
                        content=await self._run_tool(ctx, call.name, call.arguments),
                        tool_call_id=call.id,
                        name=call.name,
                    )
                )
        raise AgentError(f"no final answer after {max_turns} model turns (max_turns)")

    @staticmethod
    async def _run_tool(ctx: AgentContext, name: str, arguments: dict[str, Any]) -> str:
        # Tool failures go back to the model as text: it may correct itself.
        try:
            result = await ctx.call_tool(name, arguments)
        except RoostError as exc:
            return f"error: {exc.message}"
        text = result.output if isinstance(result.output, str) else json.dumps(result.output)
        return f"error: {text}" if result.is_error else text

    async def close(self) -> None:
        return None

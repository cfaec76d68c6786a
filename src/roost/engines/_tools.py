"""A prompt-based tool-calling protocol for local models without native tool support.

The model is told about the tools in its system message and asked to answer a tool call as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (the Hermes / Qwen convention
many small instruct models were trained on). Replies are parsed leniently: tagged calls, a
list of calls in one tag, or a reply that is nothing but such a JSON object (optionally in a
code fence). Only names of offered tools count as calls; anything else stays text, so a model
that ignores the tools still yields a valid plain answer.

Earlier tool calls and results in the history are rendered the same way (results as
``<tool_response>`` blocks in a user turn), so the conversation stays in the protocol.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from roost.engines._base import new_call_id, parse_arguments
from roost.protocol import ChatMessage, ToolCall, ToolSpec

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)

TOOLS_PROMPT = """You can call these tools (JSON schemas):
<tools>
{tools}
</tools>
To call a tool, answer with one line per call and nothing else:
<tool_call>{{"name": "<tool name>", "arguments": {{<arguments as a JSON object>}}}}</tool_call>
Tool results come back inside <tool_response></tool_response>. When no tool is needed, \
answer directly in plain text."""


def render_tools(tools: Sequence[ToolSpec]) -> str:
    """The system-prompt section that describes ``tools`` and the call format."""
    lines = [
        json.dumps(
            {"name": t.name, "description": t.description, "parameters": t.parameters},
            ensure_ascii=False,
        )
        for t in tools
    ]
    return TOOLS_PROMPT.format(tools="\n".join(lines))


def render_call(call: ToolCall) -> str:
    return (
        OPEN
        + json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        + CLOSE
    )


def to_prompt_messages(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` messages for a chat template, tools in the protocol.

    The tool section joins the first system message (one is created if there is none);
    assistant tool calls become ``<tool_call>`` lines; consecutive tool results become one
    user turn of ``<tool_response>`` blocks (roles stay system/user/assistant, which every
    chat template accepts).
    """
    out: list[dict[str, str]] = []
    if tools:
        section = render_tools(tools)
        if messages and messages[0].role == "system":
            first = messages[0].content.rstrip()
            out.append({"role": "system", "content": f"{first}\n\n{section}" if first else section})
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": f"You are a helpful assistant.\n\n{section}"})
    for message in messages:
        if message.role == "tool":
            block = (
                "<tool_response>"
                + json.dumps({"name": message.name, "content": message.content}, ensure_ascii=False)
                + "</tool_response>"
            )
            if out and out[-1].get("_tool") == "1":
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        content = message.content
        if message.role == "assistant" and message.tool_calls:
            calls = "\n".join(render_call(c) for c in message.tool_calls)
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": message.role, "content": content})
    for item in out:
        item.pop("_tool", None)
    return out


def parse_reply(text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
    """Split a model reply into its text and the calls of offered tools it contains.

    Returns ``(text, calls)``; with no valid call, ``text`` is the reply unchanged.
    """
    if not tools:
        return text, []
    names = {t.name for t in tools}
    calls: list[ToolCall] = []
    if OPEN in text:
        for match in _TAGGED.finditer(text):
            calls.extend(_calls_in(match.group(1), names))
        if calls:
            return _TAGGED.sub("", text).strip(), calls
        return text, []
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    body = fenced.group(1) if fenced else stripped
    if body[:1] in ("{", "["):
        calls = _calls_in(body, names, prefix_ok=True)
        if calls:
            return "", calls
    return text, []


def _calls_in(body: str, names: set[str], *, prefix_ok: bool = False) -> list[ToolCall]:
    body = body.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value, end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError:
        return []
    if not prefix_ok and body[end:].strip():
        return []
    items = value if isinstance(value, list) else [value]
    calls: list[ToolCall] = []
    for item in items:
        call = _call_of(item, names)
        if call is not None:
            calls.append(call)
    return calls


def _call_of(item: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    name = item.get("name") or item.get("tool") or item.get("function")
    if isinstance(name, dict):  # {"function": {"name": ..., "arguments": ...}}
        item = name
        name = name.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    raw = item.get("arguments", item.get("parameters", item.get("args")))
    return ToolCall(id=new_call_id(), name=name, arguments=parse_arguments(raw))


class ToolStreamFilter:
    """Streams a reply's text while holding back what may be a tool call.

    ``feed`` returns the text safe to show now; ``finish`` returns what was held back, to
    emit when the reply turned out to hold no tool call. Text before a ``<tool_call>`` tag
    streams; a reply that starts like a bare JSON call is held until the end.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._started = False  # decided that the reply is not a bare JSON call
        self._stopped = False  # saw a tool call tag: hold the rest

    def feed(self, text: str) -> str:
        self._pending += text
        if self._stopped:
            return ""
        if not self._started:
            head = self._pending.lstrip()
            if not head or head[0] in "{[`":
                return ""
            if len(head) < len(OPEN) and OPEN.startswith(head):
                return ""
            self._started = True
        index = self._pending.find(OPEN)
        if index >= 0:
            self._stopped = True
            out, self._pending = self._pending[:index], self._pending[index:]
            return out
        keep = _partial_suffix(self._pending, OPEN)
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def finish(self, had_calls: bool) -> str:
        out = "" if had_calls else self._pending
        self._pending = ""
        return out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0

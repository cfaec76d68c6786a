"""What the OpenAI-compatible routes share about runs: a conversation as a run's input, a
run's output as the assistant's text, and following a started run's token events.

``/v1/chat/completions`` and ``/v1/responses`` are two wire shapes of one thing: a run of
the agent named by ``model``. The conventions of that mapping live here, once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from roost.platform import PlatformAPI
from roost.protocol import ChatMessage, CompleteMessage, RoostError
from roost.server._follow import LiveRun


def run_input(messages: Sequence[ChatMessage]) -> Any:
    """A run's input for a conversation: its last user message as the prompt, with the whole
    conversation as ``{"prompt", "messages"}`` when it has several messages."""
    prompt = next((m.content for m in reversed(messages) if m.role == "user"), "")
    if len(messages) <= 1:
        return prompt
    return {
        "prompt": prompt,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }


def text_of(output: Any) -> str:
    """An agent's output as the assistant's text: a string as it is, a dict's ``reply``
    (or ``content``, ``text``, ``output``) if that is a string, anything else as JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        for key in ("reply", "content", "text", "output"):
            if isinstance(output.get(key), str):
                return str(output[key])
    return json.dumps(output)


def raise_for(complete: CompleteMessage) -> None:
    """Raise the run's failure, if it failed."""
    if complete.error is not None:
        raise RoostError.from_info(complete.error)


async def completion_of(platform: PlatformAPI, run_id: str, session: str) -> CompleteMessage:
    """Wait for a started run; its completion, or its failure raised."""
    complete = await platform.harness.wait(run_id, session=session)
    raise_for(complete)
    return complete


async def follow_tokens(
    platform: PlatformAPI, run_id: str, session: str
) -> AsyncGenerator[str | CompleteMessage, None]:
    """The text of each of a started run's token events as it arrives, then the run's
    :class:`CompleteMessage` (its failure raised). Close it (``contextlib.aclosing``) to
    stop waiting early, e.g. when the client goes away.

    Token events are live only: the subscription starts when this does, so tokens a run
    emits before are not seen (the completion still carries the whole output)."""
    async with LiveRun(platform, run_id, session) as live:
        async for item in live:
            if isinstance(item, CompleteMessage):
                raise_for(item)
                yield item
                return
            if item is not None and item.type == "token":
                yield str(item.data.get("text", ""))


__all__ = ["completion_of", "follow_tokens", "raise_for", "run_input", "text_of"]

"""The declarative chat agent's tool loop, against a real HTTP server speaking the
OpenAI / Ollama wire formats (the remote model is the only thing faked)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.llm_server import FakeLLMServer
from roost.platform import Platform


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s


def chat_agent(root: Path, model: str, max_turns: int = 0) -> Path:
    folder = root / "asker"
    folder.mkdir()
    (folder / "agent.toml").write_text(
        textwrap.dedent(
            f"""
            name = "asker"
            runtime = "chat"
            system_prompt = "Use tools for arithmetic."
            {f"max_turns = {max_turns}" if max_turns else ""}
            [models]
            chat = "{model}"
            [[tools]]
            name = "calculator"
            [[tools]]
            name = "shout"
            entry = "tools:shout"
            """
        )
    )
    (folder / "tools.py").write_text(
        'def shout(text: str) -> str:\n    """Capitalise."""\n    return text.upper()\n'
    )
    return folder


@pytest.mark.parametrize("engine", ["openai", "ollama"])
async def test_tool_calls_run_and_results_go_back_to_the_model(
    platform: Platform, server: FakeLLMServer, tmp_path: Path, engine: str
) -> None:
    url = server.openai_url if engine == "openai" else server.ollama_url
    await platform.add_model(name="remote", engine=engine, target="fake-chat", base_url=url)
    await platform.deploy(chat_agent(tmp_path, "remote"))
    server.reply_tool_call("calculator", {"expression": "6 * 7"})
    server.reply_tool_call("shout", {"text": "done"})
    server.reply("The answer is 42.")

    result = await platform.run("asker", "What is six times seven?")

    assert result.ok, result.complete.error
    assert result.output == "The answer is 42."
    chats = [
        r for r in server.requests if r.path.endswith("chat/completions") or r.path == "/api/chat"
    ]
    assert len(chats) == 3
    # The model was offered both tools, and got each tool's result back as a tool message.
    offered = {t["function"]["name"] for t in chats[0].body["tools"]}
    assert offered == {"calculator", "shout"}
    second = chats[1].body["messages"]
    assert (second[0]["role"], second[0]["content"]) == ("system", "Use tools for arithmetic.")
    assert [m["role"] for m in second][-2:] == ["assistant", "tool"]
    assert second[-1]["content"] == "42"
    assert chats[2].body["messages"][-1]["content"] == "DONE"
    # Usage of all three model calls is summed on the completion.
    assert result.complete.usage.prompt_tokens > 0
    assert result.complete.usage.completion_tokens > 0

    nodes = await platform.session_nodes(result.session.id)
    steps = [(n.content.get("service"), n.content.get("op")) for n in nodes if n.kind == "request"]
    assert steps == [
        ("tool", "specs"),
        ("infer", "chat"),
        ("tool", "call"),
        ("infer", "chat"),
        ("tool", "call"),
        ("infer", "chat"),
    ]


async def test_a_failing_tool_is_reported_to_the_model(
    platform: Platform, server: FakeLLMServer, tmp_path: Path
) -> None:
    await platform.add_model(
        name="remote", engine="openai", target="fake-chat", base_url=server.openai_url
    )
    await platform.deploy(chat_agent(tmp_path, "remote"))
    server.reply_tool_call("calculator", {"expression": "1 / 0"})
    server.reply("Cannot divide by zero.")

    result = await platform.run("asker", "1/0?")

    assert result.output == "Cannot divide by zero."
    tool_message = server.requests[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"].startswith("error:")


async def test_a_model_that_never_stops_calling_tools_is_cut_off(
    platform: Platform, server: FakeLLMServer, tmp_path: Path
) -> None:
    await platform.add_model(
        name="remote", engine="openai", target="fake-chat", base_url=server.openai_url
    )
    await platform.deploy(chat_agent(tmp_path, "remote", max_turns=2))
    for _ in range(3):
        server.reply_tool_call("calculator", {"expression": "1 + 1"})

    result = await platform.run("asker", "loop")

    assert not result.ok and result.complete.error is not None
    assert "no final answer after 2 model turns" in result.complete.error.message


async def test_earlier_turns_of_the_session_are_part_of_the_conversation(
    platform: Platform, server: FakeLLMServer, tmp_path: Path
) -> None:
    await platform.add_model(
        name="remote", engine="openai", target="fake-chat", base_url=server.openai_url
    )
    await platform.deploy(chat_agent(tmp_path, "remote"))
    first = await platform.run("asker", "my name is Ada")  # the fake echoes the prompt
    assert first.output == "echo: my name is Ada"

    await platform.run("asker", "what is my name?", session=first.session.id)

    sent = [(m["role"], m["content"]) for m in server.requests[-1].body["messages"]]
    assert sent[1:] == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "what is my name?"),
    ]

"""roost.testing: agent code unit-tested against the in-memory environment, no server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from roost import AgentContext, InvalidRequestError, NoRespondersError, RoostError
from roost.testing import AgentTestEnvironment, ScriptedModel, tool_call

ROOT = Path(__file__).resolve().parent.parent


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name /
                                                  "agent.py")  # fmt: skip
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def letters(text: str) -> list[float]:
    """A toy embedding: letter frequencies (close texts are close vectors)."""
    text = text.lower()
    return [text.count(c) / max(len(text), 1) for c in "abcdefghijklmnopqrstuvwxyz"]


async def test_the_retrieval_example_indexes_once_and_answers_from_its_sources(
    tmp_path: Path,
) -> None:
    retrieval = load_example("retrieval")
    notes = tmp_path / "notes.md"
    notes.write_text("Lighthouses guide ships.\n\nBread needs flour, water and salt.")
    model = ScriptedModel(["Ships.", "Ships, still."])
    env = AgentTestEnvironment(model=model, embed=letters)

    first = await env.run(retrieval.run, {"question": "What guides ships?", "files": [str(notes)]})
    assert first["answer"] == "Ships." and first["sources"][0]["path"] == str(notes)
    assert "Lighthouses guide ships." in model.requests[0].messages[-1].content
    assert ("progress", {"message": f"indexed {notes}", "chunks": 1}) in env.events

    again = await env.run(retrieval.run, {"question": "And now?", "files": [str(notes)]})
    assert again["answer"] == "Ships, still."
    assert env.events[-1][1]["message"] == f"unchanged {notes}"  # the KV remembered the file
    embeds = [c for c in env.calls if c.service == "embed"]
    assert len(embeds) == 3  # the file once, each question once


async def test_a_tool_loop_against_a_scripted_model() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    async def agent(ctx: AgentContext, question: str) -> str:
        result = await ctx.infer(question)
        for call in result.message.tool_calls:
            total = await ctx.tool(call.name, **call.arguments)
            result = await ctx.infer(f"the tool said {total}")
        return result.message.content

    model = ScriptedModel([[tool_call("add", a=2, b=40)], lambda req: req.messages[-1].content])
    env = AgentTestEnvironment(model=model, tools={"add": add})
    assert await env.run(agent, "2 + 40?") == "the tool said 42"
    assert [c.op for c in env.calls] == ["chat", "call", "chat"]
    with pytest.raises(InvalidRequestError, match="bad arguments for tool 'add'"):
        await env.context().tool("add", a="not a number", b=1)


async def test_kv_scopes_ask_agents_and_the_replay_safe_clock() -> None:
    async def agent(ctx: AgentContext, _: Any) -> dict[str, Any]:
        await ctx.kv.put("mine", "session value")
        await ctx.kv.shared().put("ours", b"agent value")
        name = await ctx.ask("Your name?")
        other = await ctx.call_agent("echo", {"name": name})
        return {
            "keys": await ctx.kv.list(),
            "shared": await ctx.kv.shared().get_text("ours"),
            "other": other,
            "year": ctx.now().year,
            "roll": ctx.random().randint(1, 6),
        }

    env = AgentTestEnvironment(answers=["Ada"], agents={"echo": lambda x: x}, seed=1)
    out = await env.run(agent)
    assert out["keys"] == ["mine"] and out["shared"] == "agent value"
    assert out["other"] == {"name": "Ada"} and out["year"] == 2026
    assert env.questions == ["Your name?"]
    again = AgentTestEnvironment(answers=["Ada"], agents={"echo": lambda x: x}, seed=1)
    assert (await again.run(agent))["roll"] == out["roll"]  # seeded like a replay


async def test_what_the_test_did_not_script_is_a_clear_error() -> None:
    env = AgentTestEnvironment(model=ScriptedModel(["only one"]))
    ctx = env.context()
    await ctx.infer("one")
    with pytest.raises(InvalidRequestError, match="has 1 replies and got call 2"):
        await ctx.infer("two")
    with pytest.raises(NoRespondersError, match="embed=..."):
        await ctx.embed("text")
    with pytest.raises(InvalidRequestError, match="scripted 0 answers"):
        await ctx.ask("anyone?")
    with pytest.raises(RoostError, match="no agent 'nobody'"):
        await ctx.call_agent("nobody", None)


async def test_vectors_search_by_distance_with_a_metadata_filter() -> None:
    from roost import VectorItem

    env = AgentTestEnvironment()
    ctx = env.context()
    await ctx.vectors.upsert("c", [
        VectorItem("a", [0.0, 0.0], {"kind": "x"}), VectorItem("b", [1.0, 0.0], {"kind": "y"}),
        VectorItem("c", [3.0, 0.0], {"kind": "x"}),
    ])  # fmt: skip
    hits = await ctx.vectors.search("c", [0.9, 0.0], k=2)
    assert [h.id for h in hits] == ["b", "a"]
    assert [h.id for h in await ctx.vectors.search("c", [0.9, 0.0], where={"kind": "x"})] == [
        "a", "c",
    ]  # fmt: skip
    assert await ctx.vectors.delete("c", ["a", "zzz"]) == 1

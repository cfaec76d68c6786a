"""``POST /v1/responses`` over a real uvicorn on loopback, with the official ``openai``
client: create, ``output_text``, a session continued by ``previous_response_id``, the
``responses.stream()`` helper (the agent's token events as deltas, or its whole output as
one), and errors in OpenAI's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api_helpers import TOKEN, Api, api_server, deploy
from fakes.llm_server import FakeLLMServer

#: Asks the model for its reply with streaming on, so the run emits token events.
RELAY = """
async def run(ctx, input):
    text = input if isinstance(input, str) else input["prompt"]
    return (await ctx.infer(text, model="remote", stream=True)).message.content
"""

STREAM_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with api_server(tmp_path / "home") as server:
        yield server


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def client_of(api: Api) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{api.url}/v1", api_key=TOKEN, max_retries=0)


async def nodes_of(api: Api, session: str) -> list[dict[str, Any]]:
    async with api.client() as client:
        reply = await client.get(f"/api/v1/sessions/{session}/nodes")
        assert reply.status_code == 200, reply.text
        return list(reply.json()["items"])


async def test_create_answers_a_response_with_output_text_and_usage(
    api: Api, tmp_path: Path
) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
    oa = client_of(api)
    raw = await oa.responses.with_raw_response.create(model="chatty", input="hello")
    response = raw.parse()
    assert response.output_text == "echo: hello"
    assert response.status == "completed" and response.model == "chatty"
    assert response.id.startswith("resp_")
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert [part.type for part in message.content] == ["output_text"]
    assert response.usage is not None and response.usage.total_tokens >= 0
    session = raw.headers["x-roost-session"]
    nodes = await nodes_of(api, session)
    assert [n["kind"] for n in nodes].count("invoke") == 1


async def test_previous_response_id_continues_the_session(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
    oa = client_of(api)
    first = await oa.responses.create(
        model="chatty", input="one", instructions="Be brief.", metadata={"k": "v"}
    )
    assert first.output_text == "echo: one"  # the prompt is the last user message
    assert first.instructions == "Be brief." and first.metadata == {"k": "v"}
    raw = await oa.responses.with_raw_response.create(
        model="chatty",
        previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "two"}]}],
    )
    second = raw.parse()
    assert second.output_text == "echo: two"
    assert second.previous_response_id == first.id and second.id != first.id
    session = raw.headers["x-roost-session"]
    nodes = await nodes_of(api, session)
    invokes = [n for n in nodes if n["kind"] == "invoke"]
    assert len(invokes) == 2  # both runs are in the one session
    # the first run saw the instructions as a system message before the prompt
    assert invokes[0]["content"]["input"] == {
        "prompt": "one",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
        ],
    }
    assert invokes[1]["content"]["input"] == "two"
    # and a third call continues it from the second response as well
    third = await oa.responses.create(model="chatty", previous_response_id=second.id, input="3")
    assert third.output_text == "echo: 3"
    assert [n["kind"] for n in await nodes_of(api, session)].count("invoke") == 3


async def test_the_stream_helper_gets_the_whole_output_as_one_delta(
    api: Api, tmp_path: Path
) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")  # emits progress, no tokens
    oa = client_of(api)
    async with oa.responses.stream(model="chatty", input="stream me") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [e.type for e in events] == STREAM_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [d.delta for d in deltas] == ["echo: stream me"]
    assert deltas[0].snapshot == "echo: stream me"
    assert final.output_text == "echo: stream me" and final.status == "completed"
    assert {e.response.id for e in events if hasattr(e, "response")} == {final.id}


async def test_the_stream_helper_gets_the_runs_token_events_as_deltas(
    api: Api, llm: FakeLLMServer, tmp_path: Path
) -> None:
    await api.platform.add_model(
        name="remote", engine="openai", target="fake-chat", base_url=llm.openai_url
    )
    async with api.client() as client:
        await deploy(client, tmp_path, "relay", RELAY)
    oa = client_of(api)
    async with oa.responses.stream(model="relay", input="a few words to stream") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1  # the model's tokens, as the agent streamed them
    assert "".join(deltas) == "echo: a few words to stream"
    assert final.output_text == "echo: a few words to stream"
    types = [e.type for e in events]
    assert types[:4] == STREAM_EVENTS[:4] and types[-4:] == STREAM_EVENTS[-4:]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # a streamed response continues its session like any other
    follow = await oa.responses.create(model="relay", previous_response_id=final.id, input="more")
    assert follow.output_text == "echo: more"


async def test_a_failed_run_is_a_clear_error_and_ends_a_stream_with_response_failed(
    api: Api, tmp_path: Path
) -> None:
    broken = "async def run(ctx, input):\n    raise ValueError('no luck')\n"
    async with api.client() as client:
        await deploy(client, tmp_path, "broken", broken)
    oa = client_of(api)
    with pytest.raises(openai.APIStatusError) as failed:
        await oa.responses.create(model="broken", input="x")
    assert failed.value.status_code == 502
    stream = await oa.responses.create(model="broken", input="x", stream=True)
    types = [event.type async for event in stream]
    assert types == ["response.created", "response.in_progress", "response.failed"]


async def test_errors_are_openais_shape_with_the_right_status(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
    oa = client_of(api)
    with pytest.raises(openai.NotFoundError):
        await oa.responses.create(model="ghost", input="x")
    with pytest.raises(openai.NotFoundError):
        await oa.responses.create(
            model="chatty", input="x", previous_response_id=f"resp_{'0' * 32}_{'1' * 32}"
        )
    with pytest.raises(openai.BadRequestError):
        await oa.responses.create(model="chatty", input="x", previous_response_id="resp_nope")
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{api.url}/v1", api_key="nope", max_retries=0
        ).responses.create(model="chatty", input="x")
    bad_bodies: list[Any] = [
        {"input": "no model"},
        {"model": "chatty"},
        {"model": "chatty", "input": []},
        {"model": "chatty", "input": 7},
        {"model": "chatty", "input": [{"type": "function_call_output", "output": "x"}]},
        {"model": "chatty", "input": [{"role": "tool", "content": "x"}]},
        {"model": "chatty", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        {"model": "chatty", "input": [{"role": "user", "content": 3}]},
        {"model": "chatty", "input": "x", "stream": "yes"},
    ]
    async with api.client() as client:
        for body in bad_bodies:
            reply = await client.post("/v1/responses", json=body)
            assert reply.status_code == 400, (body, reply.text)
            error = reply.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"], body
        reply = await client.post(
            "/v1/responses", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert reply.status_code == 400
        # a response of one agent does not continue another agent's session
        await deploy(client, tmp_path, "other")
    first = await oa.responses.create(model="chatty", input="x")
    with pytest.raises(openai.BadRequestError, match="is a response of agent 'chatty'"):
        await oa.responses.create(model="other", input="y", previous_response_id=first.id)


async def test_responses_is_in_the_openapi_document(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        document = (await client.get("/openapi.json")).json()
    assert "post" in document["paths"]["/v1/responses"]

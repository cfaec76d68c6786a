"""Tools: schemas from signatures, argument validation, the built-ins."""

from __future__ import annotations

import pytest

from roost.protocol import InvalidRequestError
from roost.tools import builtin_tools, calculator, tool_from_function


async def lookup(city: str, limit: int = 3) -> list[str]:
    """Find places in a city.

    Longer description that is not part of the tool description.
    """
    return [f"{city}-{i}" for i in range(limit)]


def test_schema_from_signature() -> None:
    tool = tool_from_function(lookup)
    assert tool.name == "lookup"
    assert tool.description == "Find places in a city."
    assert tool.parameters["required"] == ["city"]
    assert tool.parameters["properties"]["limit"] == {"default": 3, "type": "integer"}


async def test_invoke_validates_and_awaits() -> None:
    tool = tool_from_function(lookup)
    assert await tool.invoke({"city": "oslo", "limit": "2"}) == ["oslo-0", "oslo-1"]
    with pytest.raises(InvalidRequestError, match="city: Missing required argument"):
        await tool.invoke({"limit": 1})


async def test_sync_tools_run_off_the_event_loop() -> None:
    """A slow sync tool must not stall the loop (every other run and service shares it)."""
    import asyncio
    import threading
    import time

    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return threading.current_thread().name

    tool = tool_from_function(slow)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        thread = await tool.invoke({"seconds": 0.3})
    finally:
        ticker.cancel()
    assert thread != threading.current_thread().name
    assert ticks >= 10  # the loop kept running while the tool slept
    with pytest.raises(InvalidRequestError, match="seconds"):
        await tool.invoke({"seconds": "soon"})


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("(3 + 4) * 2", 14),
        ("2 ** 10", 1024),
        ("7 / 2", 3.5),
        ("-sqrt(16)", -4),
        ("round(pi, 2)", 3.14),
    ],
)
def test_calculator(expression: str, value: float) -> None:
    assert calculator(expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "open('x')", "2 ** 99999", "1 +"])
def test_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError):
        calculator(expression)


def test_builtins_have_specs() -> None:
    tools = builtin_tools()
    assert set(tools) == {"calculator", "current_time", "word_count"}
    assert tools["calculator"].spec.parameters["required"] == ["expression"]

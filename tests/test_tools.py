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

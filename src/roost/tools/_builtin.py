"""Tools every agent may use by name."""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
import zoneinfo
from collections.abc import Callable
from typing import Any

from roost.tools._tool import Tool, tool_from_function

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "sin": math.sin,
    "cos": math.cos,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:60]}")


def calculator(expression: str) -> float | int:
    """Evaluate an arithmetic expression, e.g. "(3 + 4) * 2" or "sqrt(2) * pi".

    Supports + - * / // % **, parentheses, pi, e and sqrt, abs, round, min, max, log, sin, cos.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    result = _evaluate(tree)
    return int(result) if isinstance(result, float) and result.is_integer() else result


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in an IANA timezone (default UTC), ISO 8601."""
    return dt.datetime.now(zoneinfo.ZoneInfo(timezone)).isoformat(timespec="seconds")


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def builtin_tools() -> dict[str, Tool]:
    """The built-in tools, by name."""
    tools = [tool_from_function(fn) for fn in (calculator, current_time, word_count)]
    return {t.name: t for t in tools}

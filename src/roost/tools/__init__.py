"""Tools offered to models: built-ins and Python functions from agent folders, and where each
of an agent's tools runs (the worker or its owner's tools daemon)."""

from roost.tools._builtin import builtin_tools, calculator, current_time, word_count
from roost.tools._placement import DeclaredTool, offered_name
from roost.tools._tool import Tool, tool_from_function

__all__ = [
    "DeclaredTool",
    "Tool",
    "builtin_tools",
    "calculator",
    "current_time",
    "offered_name",
    "tool_from_function",
    "word_count",
]

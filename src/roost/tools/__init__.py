"""Tools offered to models: built-ins and Python functions from agent folders."""

from roost.tools._builtin import builtin_tools, calculator, current_time, word_count
from roost.tools._tool import Tool, tool_from_function

__all__ = [
    "Tool",
    "builtin_tools",
    "calculator",
    "current_time",
    "tool_from_function",
    "word_count",
]

"""Tools: Python functions offered to models, with a JSON schema derived from their signature."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import ValidationError, validate_call
from pydantic.json_schema import GenerateJsonSchema

from roost.protocol import InvalidRequestError, ToolSpec


@dataclass(frozen=True)
class Tool:
    """A callable tool: ``name``, ``description``, JSON-schema ``parameters`` and the function."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    @cached_property
    def _validated(self) -> Callable[..., Any]:
        # built once per tool: pydantic's validator costs far more than a typical call
        return validate_call(self.fn)

    @cached_property
    def _is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Validate ``arguments`` against the signature and call the function.

        A sync function runs in a worker thread, so a slow one does not stall the event
        loop (and with it every other run and service of the process).
        """
        try:
            if self._is_async:
                result = await self._validated(**arguments)
            else:
                result = await asyncio.to_thread(self._validated, **arguments)
                if inspect.isawaitable(result):  # a sync function returning an awaitable
                    result = await result
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidRequestError(f"bad arguments for tool {self.name!r}: {problems}") from None
        return result


def tool_from_function(fn: Callable[..., Any], *, name: str = "", description: str = "") -> Tool:
    """Make a :class:`Tool` of a (sync or async) function with type hints.

    The description defaults to the docstring's first paragraph; parameters come from the
    signature (pydantic's JSON schema).
    """
    from pydantic import TypeAdapter

    doc = inspect.getdoc(fn) or ""
    schema = TypeAdapter[Any](validate_call(fn)).json_schema(  # type: ignore[arg-type]
        schema_generator=GenerateJsonSchema
    )
    if not schema or "properties" not in schema:
        schema = _schema_from_signature(fn)
    schema.pop("title", None)
    schema.pop("additionalProperties", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return Tool(
        name=name or fn.__name__,
        description=description or doc.split("\n\n")[0].strip(),
        parameters=schema,
        fn=fn,
    )


def _schema_from_signature(fn: Callable[..., Any]) -> dict[str, Any]:
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(f"{fn.__name__}_args", **fields)
    schema: dict[str, Any] = model.model_json_schema()
    return schema

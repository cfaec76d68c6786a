"""The ``agent.toml`` manifest: what an agent is, what it runs and what it needs.

Parsing is strict: unknown fields, wrong types and inconsistent combinations are errors that
name the file, the field and the problem (:class:`ManifestError`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roost.protocol import ErrorCode, RoostError

MANIFEST_FILE = "agent.toml"
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
ENTRY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Runtime = Literal["python", "process", "chat"]
ServiceUse = Literal["infer", "embed", "kv", "vec", "tool", "agent"]


class ManifestError(RoostError):
    """An agent manifest is invalid. ``path`` and ``field`` say where; the message says what."""

    code = ErrorCode.INVALID_MANIFEST

    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: field '{field}'" if field else self.path
        super().__init__(f"{where}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelNeeds(_Strict):
    """Models the agent uses; empty means the platform's default for that kind."""

    chat: str = ""
    embedding: str = ""


RunsOn = Literal["server", "daemon", "anywhere"]
"""Where a tool runs: ``server`` in the worker, ``daemon`` on the run owner's tools daemon
(their machine), ``anywhere`` on the daemon when one is connected, else in the worker."""


class ToolDecl(_Strict):
    """A tool the agent offers to its model: a built-in by ``name``, a Python function in
    the agent's folder given by ``entry`` (``module:function``), or (``runs_on =
    "daemon"``) a tool of the run owner's tools daemon, such as ``shell`` or an MCP server's
    ``<server>.<tool>``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z0-9_-]{1,64})?$")
    entry: str = ""
    description: str = ""
    runs_on: RunsOn = "server"

    @model_validator(mode="after")
    def _placement(self) -> ToolDecl:
        if self.runs_on == "daemon" and self.entry:
            raise ValueError(
                f"tool {self.name!r} runs on the daemon, which has its own tools: drop "
                "'entry' (or set runs_on = \"anywhere\" to fall back to it in the worker)"
            )
        if self.runs_on != "daemon" and "." in self.name:
            raise ValueError(
                f"tool {self.name!r}: only daemon tools (MCP tools '<server>.<tool>') have a "
                "'.' in their name; set runs_on = \"daemon\""
            )
        return self

    @field_validator("entry")
    @classmethod
    def _entry_shape(cls, value: str) -> str:
        if value and not ENTRY_PATTERN.match(value):
            raise ValueError(f"must look like 'module:function', got {value!r}")
        return value


class AgentManifest(_Strict):
    """A validated ``agent.toml``."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    version: str = "0.1.0"
    runtime: Runtime
    entry: str | list[str] = ""
    """``python``: ``module:function`` in the agent folder; ``process``: the command to start
    (a string split on spaces, or a list), run in the agent folder."""
    models: ModelNeeds = ModelNeeds()
    services: list[ServiceUse] = []
    tools: list[ToolDecl] = []
    system_prompt: str = ""
    timeout_s: float | None = Field(None, gt=0)
    max_turns: int | None = Field(None, ge=1, le=100)
    env: dict[str, str] = {}
    """Extra environment variables for a process-runtime agent."""

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_shorthand(cls, value: Any) -> Any:
        # "calculator" is shorthand for {name = "calculator"}
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _runtime_rules(self) -> AgentManifest:
        if self.runtime == "python":
            if not isinstance(self.entry, str) or not ENTRY_PATTERN.match(self.entry):
                raise _FieldProblem("entry", "the python runtime needs entry = 'module:function'")
        elif self.runtime == "process":
            if not self.command:
                raise _FieldProblem("entry", "the process runtime needs the command to start")
        elif self.entry:
            raise _FieldProblem("entry", "the chat runtime runs no code; remove 'entry'")
        return self

    @property
    def command(self) -> list[str]:
        if isinstance(self.entry, list):
            return [str(part) for part in self.entry]
        return self.entry.split()

    @property
    def services_used(self) -> set[str]:
        """Declared services plus those the runtime implies."""
        used: set[str] = set(self.services)
        if self.runtime == "chat":
            used.add("infer")
        if self.tools:
            used.add("tool")
        if self.models.chat:
            used.add("infer")
        if self.models.embedding:
            used.add("embed")
        return used


class _FieldProblem(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def load_manifest(path: Path | str) -> AgentManifest:
    """Read and validate an agent manifest (a folder or its ``agent.toml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(path, "", f"no {MANIFEST_FILE} found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(path, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(path, "", "not UTF-8 text") from None
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, Any], path: Path | str = MANIFEST_FILE) -> AgentManifest:
    """Validate manifest data, raising :class:`ManifestError` for the first problem."""
    try:
        return AgentManifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, _FieldProblem):
            raise ManifestError(path, ctx_error.field, ctx_error.problem) from None
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "string_pattern_mismatch" and field == "name":
            message = (
                f"{data.get('name')!r} is not a valid agent name (lowercase letters, digits, "
                "'-' and '_', starting with a letter)"
            )
        if len(exc.errors()) > 1:
            message += f" (and {len(exc.errors()) - 1} more problem(s))"
        raise ManifestError(path, field, message) from None

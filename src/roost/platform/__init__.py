"""The platform facade: everything roost runs in one process, behind one object
(:class:`Platform`), or a running deployment seen from a client (:class:`RemotePlatform`)."""

from roost.platform._api import PlatformAPI, RunControl
from roost.platform._harness_rpc import HarnessServicer, RemoteHarness, coordination_servicers
from roost.platform._local import (
    LOCAL_SERVICES,
    Platform,
    kv_commits_at,
    model_record,
)
from roost.platform._presence import WorkerPresence, default_node, engines_served, serving
from roost.platform._remote import RemotePlatform, remote_stores
from roost.stores import AvailableModel

__all__ = [
    "LOCAL_SERVICES",
    "AvailableModel",
    "HarnessServicer",
    "Platform",
    "PlatformAPI",
    "RemoteHarness",
    "RemotePlatform",
    "RunControl",
    "WorkerPresence",
    "coordination_servicers",
    "default_node",
    "engines_served",
    "kv_commits_at",
    "model_record",
    "remote_stores",
    "serving",
]

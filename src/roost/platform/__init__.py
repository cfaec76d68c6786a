"""The platform facade: everything roost runs in one process, behind one object
(:class:`Platform`), or a running deployment seen from a client: over gRPC
(:class:`RemotePlatform`) or through its HTTP API (:class:`HttpPlatform`)."""

from roost.platform._api import PlatformAPI, RunControl
from roost.platform._deploy import AgentDeployer
from roost.platform._harness_rpc import HarnessServicer, RemoteHarness, coordination_servicers
from roost.platform._http import HttpPlatform, HttpRunControl, HttpSecretStore
from roost.platform._local import LOCAL_SERVICES, Platform
from roost.platform._models import MODEL_CACHE_S, ModelCatalog, model_record
from roost.platform._presence import WorkerPresence, default_node, engines_served, serving
from roost.platform._remote import RemotePlatform, remote_stores
from roost.platform._sessions import fork_session, kv_commits_at
from roost.platform._tenant import TenantPlatform, refuse_tenant
from roost.stores import AvailableModel

__all__ = [
    "LOCAL_SERVICES",
    "MODEL_CACHE_S",
    "AgentDeployer",
    "AvailableModel",
    "HarnessServicer",
    "HttpPlatform",
    "HttpRunControl",
    "HttpSecretStore",
    "ModelCatalog",
    "Platform",
    "PlatformAPI",
    "RemoteHarness",
    "RemotePlatform",
    "RunControl",
    "TenantPlatform",
    "WorkerPresence",
    "coordination_servicers",
    "default_node",
    "engines_served",
    "fork_session",
    "kv_commits_at",
    "model_record",
    "refuse_tenant",
    "remote_stores",
    "serving",
]

"""The gateway: where users' tools daemons connect, and how the platform reaches them.

Daemons dial the gateway's gRPC stream (:class:`DaemonHub`); workers and API servers never
hold a daemon connection: they ask over the bus (:class:`DaemonCaller`) and the
:class:`ToolBridge` of the gateway holding the daemon answers.
"""

from roost.gateway._auth import daemon_authenticator
from roost.gateway._bridge import ToolBridge
from roost.gateway._caller import DaemonCaller, DaemonUnavailable
from roost.gateway._hub import (
    Authenticate,
    DaemonConnection,
    DaemonHub,
    DaemonOffline,
    start_daemon_server,
)

__all__ = [
    "Authenticate",
    "DaemonCaller",
    "DaemonConnection",
    "DaemonHub",
    "DaemonOffline",
    "DaemonUnavailable",
    "ToolBridge",
    "daemon_authenticator",
    "start_daemon_server",
]

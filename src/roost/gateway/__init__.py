"""The gateway: where users' tools daemons connect, and how the platform reaches them.

Daemons dial the gateway's gRPC stream (:class:`DaemonHub`); workers and API servers never
hold a daemon connection: they ask over the bus (:class:`DaemonCaller`) and the
:class:`ToolBridge` of the gateway holding the daemon answers.
"""

from roost.gateway._auth import daemon_authenticator
from roost.gateway._bridge import ToolBridge
from roost.gateway._caller import DaemonCaller, DaemonUnavailable
from roost.gateway._frontend import (
    FRONTEND_OPS,
    FRONTEND_SERVICE,
    TERMINAL_WS_PATH,
    DaemonFrontend,
    FrontendForbidden,
    FrontendRefused,
    TerminalSession,
    frontend_handler,
    terminal_websocket,
)
from roost.gateway._hub import (
    Authenticate,
    DaemonConnection,
    DaemonHub,
    DaemonOffline,
    start_daemon_server,
)

__all__ = [
    "FRONTEND_OPS",
    "FRONTEND_SERVICE",
    "TERMINAL_WS_PATH",
    "Authenticate",
    "DaemonCaller",
    "DaemonConnection",
    "DaemonFrontend",
    "DaemonHub",
    "DaemonOffline",
    "DaemonUnavailable",
    "FrontendForbidden",
    "FrontendRefused",
    "TerminalSession",
    "ToolBridge",
    "daemon_authenticator",
    "frontend_handler",
    "start_daemon_server",
    "terminal_websocket",
]

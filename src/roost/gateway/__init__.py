"""The gateway: where users' tools daemons connect, and how the platform reaches them.

Daemons dial the gateway's gRPC stream (:class:`DaemonHub`); workers and API servers never
hold a daemon connection, they ask over the bus and the gateway holding the daemon answers.
"""

from roost.gateway._hub import (
    Authenticate,
    DaemonConnection,
    DaemonHub,
    DaemonOffline,
    start_daemon_server,
)

__all__ = ["Authenticate", "DaemonConnection", "DaemonHub", "DaemonOffline", "start_daemon_server"]

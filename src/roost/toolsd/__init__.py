"""The tools daemon: roost's tools on a user's own machine (shell, files, background
processes, MCP servers), reached by agents on a cluster through a gateway.

The daemon dials out to a gateway over one gRPC stream (it never opens a port) and enforces
its own local policy on every call. It is a separate, light program: it imports only
:mod:`roost.protocol` and its own modules, never the platform.

See ``docs/daemon.md`` for set-up, the security model, the policy file and MCP.
"""

from roost.toolsd._builtin import BUILTIN_SPECS, Builtins
from roost.toolsd._connection import DaemonClient, DaemonStopped, Gateway, TlsMode
from roost.toolsd._host import HostConfig, OpError, ToolHost
from roost.toolsd._local import LocalDaemon
from roost.toolsd._main import read_pid
from roost.toolsd._mcp import McpConfigError, McpServerConfig, load_mcp_config
from roost.toolsd._paths import (
    Credentials,
    CredentialsError,
    DaemonPaths,
    load_credentials,
    save_credentials,
)
from roost.toolsd._policy import Policy, PolicyDenied, PolicyError, load_policy

__all__ = [
    "BUILTIN_SPECS",
    "Builtins",
    "Credentials",
    "CredentialsError",
    "DaemonClient",
    "DaemonPaths",
    "DaemonStopped",
    "Gateway",
    "HostConfig",
    "LocalDaemon",
    "McpConfigError",
    "McpServerConfig",
    "OpError",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "TlsMode",
    "ToolHost",
    "load_credentials",
    "load_mcp_config",
    "load_policy",
    "read_pid",
    "save_credentials",
]

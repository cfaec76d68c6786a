"""A real MCP server, made with the official ``mcp`` SDK, for the daemon's MCP tests.

``python mcp_server.py`` serves stdio; ``python mcp_server.py --http PORT`` serves Streamable
HTTP on loopback at ``/mcp``. Its tools are deterministic so tests can check their output.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """The text in capitals, with the serving process's id (to tell servers apart)."""
    return f"{text.upper()} (pid {os.getpid()})"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()

"""The static admin token: a break-glass credential of the default tenant's admin.

Users and their access tokens (``roost server init``, ``roost token create``) are the way
in; this token exists so a fresh server can be reached before any user does, and so that
an operator with the server's home can always get in. Leave ``[server] admin_token`` empty
and keep ``$ROOST_HOME/server/admin-token`` (mode 0600) as secret as the database.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def admin_token(configured: str, home: Path) -> tuple[str, Path | None]:
    """The admin token: ``configured``, else the one kept in ``home/server/admin-token``
    (made on first use, mode 0600). Returns it and the file it came from (``None`` when
    configured)."""
    if configured:
        return configured, None
    path = home / "server" / "admin-token"
    try:
        token = path.read_text().strip()
        if token:
            return token, path
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "roost_admin_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token, path


__all__ = ["admin_token"]

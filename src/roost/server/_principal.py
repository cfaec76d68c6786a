"""Who is calling: the principal every route acts for.

Until users and auth exist, one configured static admin token guards the API, and it
authenticates the one admin of the one tenant. Routes take a :class:`Principal` from the
start, so the ownership checks of multi-user auth slot in behind the same dependency.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its id, the tenant whose data it sees, and its role."""

    id: str
    tenant: str
    role: Literal["admin", "member"]


ADMIN = Principal(id="admin", tenant=DEFAULT_TENANT, role="admin")


class StaticTokenAuth:
    """Authenticates the bearer of one static token as the admin."""

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        self._token = token.encode()

    def authenticate(self, token: str) -> Principal | None:
        """The principal ``token`` stands for, or ``None`` (compared in constant time)."""
        if hmac.compare_digest(token.encode(), self._token):
            return ADMIN
        return None


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


__all__ = ["ADMIN", "DEFAULT_TENANT", "Principal", "StaticTokenAuth", "admin_token"]

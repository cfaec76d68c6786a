"""Who is calling, and what a token lets it do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["admin", "member"]

#: Every scope a token may carry. A write scope includes ``read``; ``admin`` is every scope
#: (and admin routes also need the admin role).
SCOPES: dict[str, str] = {
    "read": "read agents, runs, sessions, models and which secrets exist",
    "runs:write": "start, cancel and answer runs; fork and promote sessions",
    "agents:write": "deploy and delete agents",
    "models:write": "add and remove models",
    "secrets:write": "put and delete secrets",
    "tokens:write": "create and revoke your own access tokens",
    "machine:write": "write files, run processes and open terminals on your own machine "
    "(through your tools daemon)",
    "daemon": "connect a tools daemon",
    "admin": "every scope; with the admin role, manage users and read the audit log",
}

#: The scopes of a token created without saying (the CLI's own login token).
DEFAULT_SCOPES = ("read", "runs:write", "agents:write", "models:write", "secrets:write",
                  "tokens:write", "machine:write")  # fmt: skip


class ScopeError(ValueError):
    """A scope that does not exist."""


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """``scopes``, deduplicated and sorted; raises :class:`ScopeError` naming an unknown one."""
    chosen = sorted(set(scopes))
    for scope in chosen:
        if scope not in SCOPES:
            raise ScopeError(f"unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
    if not chosen:
        raise ScopeError("a token needs at least one scope")
    return tuple(chosen)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its user id, the tenant whose data it sees, its role, and
    the scopes of the credential it came with."""

    id: str
    tenant: str
    role: Role
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(SCOPES))
    token_id: str | None = None  # the access token used, if any

    def allows(self, scope: str) -> bool:
        """Whether this caller's credential grants ``scope``."""
        if "admin" in self.scopes:
            return True
        if scope == "read":
            return bool(self.scopes - {"daemon"})
        return scope in self.scopes

    def can_grant(self, scope: str) -> bool:
        """Whether a token this caller makes may carry ``scope``: only scopes it has,
        except ``daemon`` (connecting one's own tools daemon), which is narrower than the
        ``tokens:write`` that makes tokens at all."""
        return self.allows(scope) or (scope == "daemon" and self.allows("tokens:write"))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes


__all__ = ["DEFAULT_SCOPES", "SCOPES", "Principal", "Role", "ScopeError", "check_scopes"]

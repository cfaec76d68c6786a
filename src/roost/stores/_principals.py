"""Users and service accounts, access tokens and the audit log, on SQL.

The store knows tokens only by their SHA-256: minting them, their format and what their
scopes mean belong to :mod:`roost.auth`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from roost.protocol import InvalidRequestError, NotFoundError, tenants
from roost.stores._db import Database
from roost.stores._schema import AccessTokenRow, AuditRow, UserRow

Role = Literal["admin", "member"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: The longest a token may live (a year); every token must expire.
MAX_TOKEN_TTL_S = 366 * 24 * 3600
#: ``last_used_at`` is written at most this often per token, so reads stay reads.
LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    role: Role
    kind: str
    tenant: str
    disabled: bool
    created_at: float
    subject: str | None = None  # the identity provider's ``iss|sub`` of a JWT user


@dataclass(frozen=True)
class AccessToken:
    """A token's record; the token itself is never stored."""

    id: str
    user_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float
    last_used_at: float | None
    revoked_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: float
    tenant: str
    actor: str
    action: str
    target: str
    ok: bool
    detail: dict[str, Any]


def _user(row: UserRow) -> User:
    role: Role = "admin" if row.role == "admin" else "member"
    return User(
        row.id, row.name, row.email, role, row.kind, row.tenant, row.disabled, row.created_at,
        row.subject,
    )  # fmt: skip


def _token(row: AccessTokenRow) -> AccessToken:
    return AccessToken(
        row.id,
        row.user_id,
        row.name,
        row.prefix,
        tuple(row.scopes),
        row.created_at,
        row.expires_at,
        row.last_used_at,
        row.revoked_at,
    )


def _audit(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        row.id, row.at, row.tenant, row.actor, row.action, row.target, row.ok, dict(row.detail)
    )


class SqlPrincipalStore:
    """Principals on ``db``. A tenant is the unit of data isolation; a user created
    without one gets a tenant of its own (its id)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- users ---------------------------------------------------------------------------

    async def create_user(
        self,
        name: str,
        *,
        email: str = "",
        role: Role = "member",
        kind: str = "user",
        tenant: str | None = None,
        subject: str | None = None,
    ) -> User:
        """A new user (``kind="service"``: a service account); its name is unique."""
        if not NAME.match(name):
            raise InvalidRequestError(
                f"user name {name!r}: letters, digits and . _ @ - (at most 128)"
            )
        if role not in ("admin", "member"):
            raise InvalidRequestError(f"role {role!r}: admin or member")
        tenant = tenant or tenants.DEFAULT_TENANT
        if not tenants.is_tenant(tenant):
            raise InvalidRequestError(
                f"tenant {tenant!r}: lowercase letters and digits, a letter first (at most 32)"
            )
        user_id = "u_" + secrets.token_hex(8)
        row = UserRow(
            id=user_id,
            name=name,
            email=email,
            role=role,
            kind=kind,
            tenant=tenant,
            subject=subject,
            disabled=False,
            created_at=time.time(),
        )

        def work(session: DbSession) -> User:
            if session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise InvalidRequestError(f"a user named {name!r} exists")
            if subject is not None and session.scalar(
                select(UserRow.id).where(UserRow.subject == subject)
            ):
                raise InvalidRequestError(f"a user with subject {subject!r} exists")
            session.add(row)
            session.flush()
            return _user(row)

        return await self.db.writing(work, what="create user")

    async def user(self, user_id: str) -> User:
        def read(session: DbSession) -> User:
            row = session.get(UserRow, user_id)
            if row is None:
                raise NotFoundError(f"no user {user_id!r}")
            return _user(row)

        return await self.db.reading(read)

    async def user_by_name(self, name: str) -> User | None:
        def read(session: DbSession) -> User | None:
            row = session.scalar(select(UserRow).where(UserRow.name == name))
            return _user(row) if row is not None else None

        return await self.db.reading(read)

    async def user_by_subject(self, subject: str) -> User | None:
        def read(session: DbSession) -> User | None:
            row = session.scalar(select(UserRow).where(UserRow.subject == subject))
            return _user(row) if row is not None else None

        return await self.db.reading(read)

    async def users(self, tenant: str | None = None) -> list[User]:
        """Every user (of ``tenant``, if given), oldest first."""

        def read(session: DbSession) -> list[User]:
            query = select(UserRow).order_by(UserRow.created_at, UserRow.id)
            if tenant is not None:
                query = query.where(UserRow.tenant == tenant)
            return [_user(r) for r in session.scalars(query)]

        return await self.db.reading(read)

    async def has_admin(self) -> bool:
        def read(session: DbSession) -> bool:
            query = select(UserRow.id).where(UserRow.role == "admin").limit(1)
            return session.scalar(query) is not None

        return await self.db.reading(read)

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        def work(session: DbSession) -> None:
            row = session.get(UserRow, user_id)
            if row is None:
                raise NotFoundError(f"no user {user_id!r}")
            row.disabled = disabled

        await self.db.writing(work, what="disable user")

    # --- access tokens -------------------------------------------------------------------

    async def create_token(
        self,
        user_id: str,
        name: str,
        scopes: Sequence[str],
        ttl_s: float,
        *,
        digest: str,
        prefix: str,
    ) -> AccessToken:
        """Record a new token of ``user_id``, known by its SHA-256 ``digest``."""
        if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
            raise InvalidRequestError(
                f"expiry: a token lives more than 0 s and at most {MAX_TOKEN_TTL_S // 86400} days"
            )
        if not name or len(name) > 200:
            raise InvalidRequestError("token name: 1 to 200 characters")
        now = time.time()
        row = AccessTokenRow(
            id="tok_" + secrets.token_hex(8),
            user_id=user_id,
            name=name,
            prefix=prefix,
            hash=digest,
            scopes=list(scopes),
            created_at=now,
            expires_at=now + ttl_s,
            last_used_at=None,
            revoked_at=None,
        )

        def work(session: DbSession) -> AccessToken:
            if session.get(UserRow, user_id) is None:
                raise NotFoundError(f"no user {user_id!r}")
            session.add(row)
            session.flush()
            return _token(row)

        return await self.db.writing(work, what="create token")

    async def tokens(self, user_id: str) -> list[AccessToken]:
        """``user_id``'s tokens, newest first."""

        def read(session: DbSession) -> list[AccessToken]:
            query = (
                select(AccessTokenRow)
                .where(AccessTokenRow.user_id == user_id)
                .order_by(AccessTokenRow.created_at.desc())
            )
            return [_token(r) for r in session.scalars(query)]

        return await self.db.reading(read)

    async def revoke_token(self, token_id: str, *, owner: str | None) -> AccessToken:
        """Revoke ``token_id``; with ``owner``, only if it is that user's (else not found)."""

        def work(session: DbSession) -> AccessToken:
            row = session.get(AccessTokenRow, token_id)
            if row is None or (owner is not None and row.user_id != owner):
                raise NotFoundError(f"no token {token_id!r}")
            if row.revoked_at is None:
                row.revoked_at = time.time()
            return _token(row)

        return await self.db.writing(work, what="revoke token")

    async def token_owner(self, digest: str) -> tuple[AccessToken, User] | None:
        """The token whose SHA-256 is ``digest`` and its user, if the token is live (not
        expired, not revoked) and the user is not disabled; its ``last_used_at`` is
        updated (at most once a minute)."""

        def read(session: DbSession) -> tuple[AccessToken, User] | None:
            found = session.execute(
                select(AccessTokenRow, UserRow)
                .join(UserRow, UserRow.id == AccessTokenRow.user_id)
                .where(AccessTokenRow.hash == digest)
            ).first()
            if found is None:
                return None
            row, user = found
            if row.revoked_at is not None or row.expires_at <= time.time() or user.disabled:
                return None
            return _token(row), _user(user)

        found = await self.db.reading(read)
        if found is None:
            return None
        token, _owner = found
        now = time.time()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION_S:

            def touch(session: DbSession) -> None:
                session.execute(
                    update(AccessTokenRow)
                    .where(AccessTokenRow.id == token.id)
                    .values(last_used_at=now)
                )

            await self.db.writing(touch, what="token last used")
        return found

    # --- audit ---------------------------------------------------------------------------

    async def record(
        self,
        action: str,
        *,
        tenant: str,
        actor: str,
        target: str = "",
        ok: bool = True,
        **detail: Any,
    ) -> None:
        """Append one event to the audit log."""
        row = AuditRow(
            at=time.time(),
            tenant=tenant,
            actor=actor or "-",
            action=action,
            target=target[:512],
            ok=ok,
            detail=detail,
        )

        def work(session: DbSession) -> None:
            session.add(row)

        await self.db.writing(work, what="audit")

    async def audit(
        self,
        *,
        tenant: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Audit events, newest first, filtered by tenant, action and time."""

        def read(session: DbSession) -> list[AuditEvent]:
            query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if tenant is not None:
                query = query.where(AuditRow.tenant == tenant)
            if action is not None:
                query = query.where(AuditRow.action == action)
            if since is not None:
                query = query.where(AuditRow.at >= since)
            return [_audit(r) for r in session.scalars(query)]

        return await self.db.reading(read)


__all__ = ["MAX_TOKEN_TTL_S", "AccessToken", "AuditEvent", "Role", "SqlPrincipalStore", "User"]

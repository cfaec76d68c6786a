"""Who you are, your access tokens, and (for admins) users and the audit log.

``/api/v1/me``, ``/api/v1/auth/login``, ``/api/v1/tokens``, ``/api/v1/users``,
``/api/v1/audit``. A token is returned once, when it is made; afterwards only its record
(display prefix, scopes, expiry, last use) is.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, Field

from roost.auth import ADMIN, DEFAULT_SCOPES, DEFAULT_TENANT, SCOPES, Principal, ScopeError
from roost.protocol import InvalidRequestError, NotFoundError, tenants
from roost.server._deps import Admin, Caller, ServerState, ServerStateDep, needs
from roost.server._errors import ApiError
from roost.server._schemas import NAME
from roost.stores import MAX_TOKEN_TTL_S, AccessToken, AuditEvent, User

router = APIRouter(prefix="/api/v1", tags=["identity"])

# any well-formed id; an id that was never made is a 404, like every unknown id
TOKEN_ID = USER_ID = NAME


class Me(BaseModel):
    id: str
    name: str
    tenant: str
    role: str
    scopes: list[str]
    token_id: str | None


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="What the token is for")
    scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        max_length=len(SCOPES),
        description=f"Any of: {', '.join(SCOPES)}",
    )
    expires_in_days: float = Field(
        90, gt=0, le=MAX_TOKEN_TTL_S / 86400, description="Every token expires"
    )


class TokenOut(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: float
    expires_at: float
    last_used_at: float | None
    revoked_at: float | None

    @classmethod
    def of(cls, token: AccessToken) -> TokenOut:
        return cls(
            id=token.id,
            user_id=token.user_id,
            name=token.name,
            prefix=token.prefix,
            scopes=list(token.scopes),
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class NewToken(TokenOut):
    token: str = Field(description="The token itself: shown this once, never again")


class UserCreate(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
    email: str = Field("", max_length=320)
    role: Literal["admin", "member"] = "member"
    kind: Literal["user", "service"] = "user"
    tenant: str | None = Field(
        None,
        pattern=tenants.TENANT_PATTERN,
        description="The user's tenant; omitted: the admin's own. Only the deployment's "
        "admins (of the default tenant) add users to other tenants.",
    )
    subject: str | None = Field(
        None,
        min_length=3,
        max_length=512,
        description="The identity provider's `iss|sub` of a user who signs in with a JWT",
    )


class UserOut(BaseModel):
    id: str
    name: str
    email: str
    role: str
    kind: str
    tenant: str
    disabled: bool
    created_at: float
    subject: str | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            name=user.name,
            email=user.email,
            role=user.role,
            kind=user.kind,
            tenant=user.tenant,
            disabled=user.disabled,
            created_at=user.created_at,
            subject=user.subject,
        )


class AuditOut(BaseModel):
    id: int
    at: float
    tenant: str
    actor: str
    action: str
    target: str
    ok: bool
    detail: dict[str, object]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditOut:
        return cls(
            id=event.id,
            at=event.at,
            tenant=event.tenant,
            actor=event.actor,
            action=event.action,
            target=event.target,
            ok=event.ok,
            detail=event.detail,
        )


async def _me(state: ServerStateDep, caller: Principal) -> Me:
    name = "admin (static token)"
    if caller is not ADMIN:
        name = (await state.principals.user(caller.id)).name
    return Me(
        id=caller.id,
        name=name,
        tenant=caller.tenant,
        role=caller.role,
        scopes=sorted(caller.scopes),
        token_id=caller.token_id,
    )


@router.get("/me", summary="Who this token belongs to")
async def me(state: ServerStateDep, caller: Caller) -> Me:
    return await _me(state, caller)


@router.post("/auth/login", summary="Check a token and record the login (`roost auth login`)")
async def login(state: ServerStateDep, caller: Caller) -> Me:
    found = await _me(state, caller)
    await state.audit(caller, "auth.login", caller.token_id or "")
    return found


# --- tokens -------------------------------------------------------------------------------

tokens = APIRouter(prefix="/tokens", dependencies=[Depends(needs("tokens"))])


@tokens.get("", summary="Your access tokens (never the tokens themselves)")
async def list_tokens(state: ServerStateDep, caller: Caller) -> list[TokenOut]:
    return [TokenOut.of(t) for t in await state.principals.tokens(caller.id)]


@tokens.post("", status_code=status.HTTP_201_CREATED, summary="Make an access token")
async def create_token(state: ServerStateDep, caller: Caller, body: TokenCreate) -> NewToken:
    if caller is ADMIN:
        raise ApiError(400, "the static admin token is not a user: make one (roost server init)")
    beyond = sorted(s for s in set(body.scopes) if not caller.can_grant(s))
    if beyond:  # a token cannot mint a stronger one
        raise ApiError(403, f"this token cannot grant scopes it lacks: {', '.join(beyond)}")
    return await _issue(state, caller, caller.id, body)


async def _issue(
    state: ServerState, caller: Principal, user_id: str, body: TokenCreate
) -> NewToken:
    """Make ``user_id`` a token as ``body`` says, audited as ``caller``'s doing."""
    try:
        token, record = await state.auth.issue(
            user_id, body.name, scopes=body.scopes, ttl_s=body.expires_in_days * 86400
        )
    except ScopeError as exc:
        raise InvalidRequestError(str(exc)) from None
    owner = {} if user_id == caller.id else {"owner": user_id}
    await state.audit(caller, "token.create", record.id, scopes=list(record.scopes), **owner)
    return NewToken(token=token, **TokenOut.of(record).model_dump())


@tokens.delete(
    "/{token_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an access token"
)
async def revoke_token(
    state: ServerStateDep, caller: Caller, token_id: Annotated[str, Path(pattern=TOKEN_ID)]
) -> None:
    owner = None if caller.is_admin else caller.id
    record = await state.auth.revoke(token_id, owner=owner)
    await state.audit(
        caller,
        "token.revoke",
        record.id,
        owner=record.user_id,
    )


router.include_router(tokens)


# --- admin: users and the audit log -------------------------------------------------------


def _tenant_scope(caller: Principal) -> str | None:
    """Which tenant's users and audit events an admin manages: their own, or every tenant's
    (``None``) for the deployment's admins (those of the default tenant)."""
    return None if caller.tenant == DEFAULT_TENANT else caller.tenant


async def _managed_user(state: ServerState, caller: Principal, user_id: str) -> User:
    """A user the admin ``caller`` manages; another tenant's is "no user" (404)."""
    user = await state.principals.user(user_id)
    scope = _tenant_scope(caller)
    if scope is not None and user.tenant != scope:
        raise NotFoundError(f"no user {user_id!r}")
    return user


@router.get("/users", summary="The users of your tenant (admins; the deployment's: all)")
async def list_users(state: ServerStateDep, caller: Admin) -> list[UserOut]:
    return [UserOut.of(u) for u in await state.principals.users(tenant=_tenant_scope(caller))]


@router.post("/users", status_code=status.HTTP_201_CREATED, summary="Add a user (admins)")
async def create_user(state: ServerStateDep, caller: Admin, body: UserCreate) -> UserOut:
    tenant = body.tenant or caller.tenant
    if tenant != caller.tenant and _tenant_scope(caller) is not None:
        raise ApiError(403, f"admins of tenant {caller.tenant!r} add users to it only")
    user = await state.principals.create_user(
        body.name, email=body.email, role=body.role, kind=body.kind, tenant=tenant,
        subject=body.subject,
    )  # fmt: skip
    await state.audit(caller, "user.create", user.id, role=user.role)
    return UserOut.of(user)


@router.post(
    "/users/{user_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Make an access token for a user or service account (admins)",
)
async def create_user_token(
    state: ServerStateDep,
    caller: Admin,
    user_id: Annotated[str, Path(pattern=USER_ID)],
    body: TokenCreate,
) -> NewToken:
    await _managed_user(state, caller, user_id)
    return await _issue(state, caller, user_id, body)


@router.delete(
    "/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Disable a user (admins)"
)
async def disable_user(
    state: ServerStateDep, caller: Admin, user_id: Annotated[str, Path(pattern=USER_ID)]
) -> None:
    if user_id == caller.id:
        raise ApiError(400, "you cannot disable yourself")
    await _managed_user(state, caller, user_id)
    await state.principals.set_disabled(user_id, True)
    state.auth.forget()
    await state.audit(caller, "user.disable", user_id)


@router.get("/audit", summary="The audit log, newest first (admins)")
async def audit_log(
    state: ServerStateDep,
    caller: Admin,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    events = await state.principals.audit(
        tenant=_tenant_scope(caller), action=action, since=since, limit=limit
    )
    return [AuditOut.of(e) for e in events]


__all__ = ["router"]

"""The dependencies routes declare: the platform, the calling principal, a page of a list."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from roost.auth import Authenticator, Principal
from roost.config import ServerConfig
from roost.platform import PlatformAPI, TenantPlatform
from roost.server._errors import ApiError
from roost.stores import SqlPrincipalStore

T = TypeVar("T")

#: The largest offset a cursor may name: far more items than a list is read for, and
#: within what every database takes as a ``LIMIT`` (a 64-bit integer).
MAX_CURSOR_OFFSET = 2**31 - 1


@dataclass
class ServerState:
    """What one API server process holds: nothing another replica would need."""

    platform: PlatformAPI
    auth: Authenticator
    config: ServerConfig

    @property
    def principals(self) -> SqlPrincipalStore:
        return self.auth.store

    async def audit(self, caller: Principal, action: str, target: str = "", **detail: Any) -> None:
        """Record what ``caller`` did in the audit log."""
        await self.principals.record(
            action, tenant=caller.tenant, actor=caller.id, target=target, **detail
        )


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.roost
    return state


# declared so /docs offers an "Authorize" button; the Authenticate middleware does the work
_bearer = HTTPBearer(
    auto_error=False,
    description="A personal access token (`roost token create`) or the admin token",
)


def principal(request: Request, _: Annotated[object, Depends(_bearer)]) -> Principal:
    """The caller the Authenticate middleware found for this request."""
    found = getattr(request.state, "principal", None)
    if not isinstance(found, Principal):  # a route mounted outside the middleware
        raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
    return found


def platform(
    state: Annotated[ServerState, Depends(server_state)],
    caller: Annotated[Principal, Depends(principal)],
) -> PlatformAPI:
    """The platform as the caller's tenant sees it: every route reads and writes through
    this view, so no route can reach another tenant's agents, sessions, runs, models or
    secrets (:class:`~roost.platform.TenantPlatform`)."""
    return TenantPlatform(state.platform, caller.tenant, caller.id)


def needs(area: str) -> Callable[[Request, Principal], None]:
    """A router dependency: reading (GET, HEAD) needs the ``read`` scope; anything else
    ``<area>:write``."""

    def check(request: Request, caller: Annotated[Principal, Depends(principal)]) -> None:
        scope = "read" if request.method in ("GET", "HEAD") else f"{area}:write"
        if not caller.allows(scope):
            raise ApiError(403, f"this token lacks the {scope!r} scope")

    return check


def admin(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A dependency of admin routes: the admin role and a token with the admin scope."""
    if not caller.is_admin:
        raise ApiError(403, "admins only (the admin role and a token with the 'admin' scope)")
    return caller


ServerStateDep = Annotated[ServerState, Depends(server_state)]
Platform = Annotated[PlatformAPI, Depends(platform)]
Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list: ``limit`` items after ``offset`` (from the opaque cursor)."""

    limit: int
    offset: int

    @property
    def fetch(self) -> int:
        """How many items to read to fill this page and know whether another follows."""
        return self.offset + self.limit + 1


def page_request(
    state: Annotated[ServerState, Depends(server_state)],
    limit: Annotated[int | None, Query(ge=1, description="Items per page")] = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next` of the previous page")
    ] = None,
) -> PageRequest:
    config = state.config
    if limit is not None and limit > config.max_page_size:
        raise ApiError(422, f"limit: at most {config.max_page_size}")
    offset = 0
    if cursor:
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ApiError(400, f"cursor: {cursor!r} is not a cursor this API gave") from None
        if not 0 <= offset <= MAX_CURSOR_OFFSET:
            raise ApiError(400, f"cursor: {cursor!r} is not a cursor this API gave")
    return PageRequest(limit=limit or config.page_size, offset=offset)


PageParams = Annotated[PageRequest, Depends(page_request)]


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; ``next`` fetches the following page."""

    items: list[T]
    next: str | None = None


def page_of(items: Sequence[T], page: PageRequest) -> Page[T]:
    """The page ``page`` of ``items`` (read with at least ``page.fetch`` items)."""
    chosen = list(items[page.offset : page.offset + page.limit])
    more = len(items) > page.offset + page.limit
    cursor = base64.urlsafe_b64encode(str(page.offset + page.limit).encode()).decode().rstrip("=")
    return Page[T](items=chosen, next=cursor if more else None)


__all__ = [
    "Admin",
    "Caller",
    "Page",
    "PageParams",
    "PageRequest",
    "Platform",
    "ServerState",
    "ServerStateDep",
    "needs",
    "page_of",
    "principal",
    "server_state",
]

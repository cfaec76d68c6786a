"""The dependencies routes declare: the platform, the calling principal, a page of a list."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from roost.config import ServerConfig
from roost.platform import PlatformAPI
from roost.server._errors import ApiError
from roost.server._principal import Principal, StaticTokenAuth

T = TypeVar("T")

#: The largest offset a cursor may name: far more items than a list is read for, and
#: within what every database takes as a ``LIMIT`` (a 64-bit integer).
MAX_CURSOR_OFFSET = 2**31 - 1


@dataclass
class ServerState:
    """What one API server process holds: nothing another replica would need."""

    platform: PlatformAPI
    auth: StaticTokenAuth
    config: ServerConfig


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.roost
    return state


def platform(state: Annotated[ServerState, Depends(server_state)]) -> PlatformAPI:
    return state.platform


_bearer = HTTPBearer(
    auto_error=False, description="The admin token (`roost server api` prints where it is)"
)


def principal(
    state: Annotated[ServerState, Depends(server_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 without a valid token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
    found = state.auth.authenticate(credentials.credentials)
    if found is None:
        raise ApiError(401, "invalid token")
    return found


ServerStateDep = Annotated[ServerState, Depends(server_state)]
Platform = Annotated[PlatformAPI, Depends(platform)]
Caller = Annotated[Principal, Depends(principal)]


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
    "Caller",
    "Page",
    "PageParams",
    "PageRequest",
    "Platform",
    "ServerState",
    "ServerStateDep",
    "page_of",
    "principal",
    "server_state",
]

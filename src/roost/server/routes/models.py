"""``/api/v1/models``: list, add, remove model registrations."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, status

from roost.auth import Principal
from roost.protocol import InvalidRequestError, tenants
from roost.server._deps import Caller, Page, PageParams, Platform, ServerStateDep, needs, page_of
from roost.server._schemas import NAME, Model, ModelAdd

router = APIRouter(
    prefix="/api/v1/models", tags=["models"], dependencies=[Depends(needs("models"))]
)


@router.get("", summary="Registered models")
async def list_models(platform: Platform, caller: Caller, page: PageParams) -> Page[Model]:
    models = sorted(await platform.list_models(), key=lambda m: m.name)
    return page_of([Model.of(m) for m in models], page)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a model")
async def add_model(
    body: ModelAdd, platform: Platform, caller: Caller, state: ServerStateDep
) -> Model:
    if state.config.tenant_model_urls == "public":
        await check_public_url(body.base_url, caller)
    record = await platform.add_model(
        name=body.name,
        engine=body.engine,
        target=body.target,
        kind=body.kind,
        base_url=body.base_url,
        api_key_secret=body.api_key_secret,
        dimension=body.dimension,
        replace=body.replace,
    )
    return Model.of(record)


async def check_public_url(url: str, caller: Principal) -> None:
    """Refuse a tenant's model ``base_url`` that is not https or whose host resolves to a
    loopback, private, link-local or otherwise non-public address: roost's workers would
    call it. Operators (the default tenant) may register any URL."""
    if not url or caller.tenant == tenants.DEFAULT_TENANT:
        return
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme != "https" or not host:
        raise InvalidRequestError(
            f"base_url {url!r}: a tenant's model needs an https URL (the operator can allow "
            'others: [server] tenant_model_urls = "any")'
        )
    try:
        found = await asyncio.to_thread(socket.getaddrinfo, host, parts.port or 443)
    except (OSError, UnicodeError) as exc:
        raise InvalidRequestError(f"base_url {url!r}: cannot resolve {host!r} ({exc})") from None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address.is_global:
            raise InvalidRequestError(
                f"base_url {url!r}: {host} is {address}, not a public address; a tenant's "
                "model cannot point into roost's network"
            )


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a model")
async def remove_model(
    name: Annotated[str, Path(pattern=NAME)], platform: Platform, caller: Caller
) -> None:
    await platform.remove_model(name)

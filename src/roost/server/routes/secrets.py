"""``/api/v1/secrets``: put, exists, delete. Values go in and are never returned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from roost.protocol import NotFoundError
from roost.server._deps import Caller, Platform, ServerStateDep, needs
from roost.server._schemas import NAME, SecretInfo, SecretPut

router = APIRouter(
    prefix="/api/v1/secrets", tags=["secrets"], dependencies=[Depends(needs("secrets"))]
)

SecretName = Annotated[str, Path(pattern=NAME)]


@router.put("/{name}", summary="Set a secret (encrypted at rest)")
async def put_secret(
    name: SecretName, body: SecretPut, state: ServerStateDep, platform: Platform, caller: Caller
) -> SecretInfo:
    await platform.secrets.put(name, body.value)
    await state.audit(caller, "secret.put", name)
    return SecretInfo(name=name, exists=True)


@router.get("/{name}", summary="Whether a secret exists (its value is never returned)")
async def secret_exists(name: SecretName, platform: Platform, caller: Caller) -> SecretInfo:
    if not await platform.secrets.exists(name):
        raise NotFoundError(f"no secret {name!r}")
    return SecretInfo(name=name, exists=True)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a secret")
async def delete_secret(
    name: SecretName, state: ServerStateDep, platform: Platform, caller: Caller
) -> None:
    if not await platform.secrets.exists(name):
        raise NotFoundError(f"no secret {name!r}")
    await platform.secrets.delete(name)
    await state.audit(caller, "secret.delete", name)

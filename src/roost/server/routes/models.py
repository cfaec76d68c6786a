"""``/api/v1/models``: list, add, remove model registrations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from roost.server._deps import Caller, Page, PageParams, Platform, needs, page_of
from roost.server._schemas import NAME, Model, ModelAdd

router = APIRouter(
    prefix="/api/v1/models", tags=["models"], dependencies=[Depends(needs("models"))]
)


@router.get("", summary="Registered models")
async def list_models(platform: Platform, caller: Caller, page: PageParams) -> Page[Model]:
    models = sorted(await platform.list_models(), key=lambda m: m.name)
    return page_of([Model.of(m) for m in models], page)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a model")
async def add_model(body: ModelAdd, platform: Platform, caller: Caller) -> Model:
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


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a model")
async def remove_model(
    name: Annotated[str, Path(pattern=NAME)], platform: Platform, caller: Caller
) -> None:
    await platform.remove_model(name)

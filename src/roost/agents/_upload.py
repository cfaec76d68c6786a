"""An agent folder packed for upload to a deployment (the gRPC harness or the API)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roost.agents._bundle import BundleError, pack_folder
from roost.agents._manifest import ManifestError, load_manifest


async def pack_agent(path: Path | str) -> tuple[bytes, Path]:
    """The agent folder at ``path`` (the folder or its ``agent.toml``) as a bundle, and the
    folder. A malformed manifest is reported here, before any upload; a folder that cannot
    be bundled is a :class:`~roost.agents.ManifestError` naming its ``agent.toml``."""
    path = Path(path).resolve()
    folder = path.parent if path.is_file() else path
    load_manifest(path)
    try:
        bundle = await asyncio.to_thread(pack_folder, folder)
    except BundleError as exc:
        raise ManifestError(folder / "agent.toml", "", str(exc)) from None
    return bundle, folder


__all__ = ["pack_agent"]

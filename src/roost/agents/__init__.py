"""Agents: the ``agent.toml`` manifest and its validation; bundles of agent folders."""

from roost.agents._bundle import BundleError, pack_folder, unpack_bundle
from roost.agents._manifest import (
    MANIFEST_FILE,
    AgentManifest,
    ManifestError,
    ModelNeeds,
    Runtime,
    ToolDecl,
    load_manifest,
    parse_manifest,
)

__all__ = [
    "MANIFEST_FILE",
    "AgentManifest",
    "BundleError",
    "ManifestError",
    "ModelNeeds",
    "Runtime",
    "ToolDecl",
    "load_manifest",
    "pack_folder",
    "parse_manifest",
    "unpack_bundle",
]

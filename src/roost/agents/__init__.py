"""Agents: the ``agent.toml`` manifest and its validation."""

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
    "ManifestError",
    "ModelNeeds",
    "Runtime",
    "ToolDecl",
    "load_manifest",
    "parse_manifest",
]

"""Agents: the ``agent.toml`` manifest and its validation; bundles of agent folders; the
environments of their own dependencies."""

from roost.agents._bundle import BundleError, pack_folder, unpack_bundle
from roost.agents._deps import (
    DependencyError,
    OutputCallback,
    agent_path,
    agent_venv,
    environments_linked,
    find_dependencies,
)
from roost.agents._envs import PreparedEnv, prepare_environment
from roost.agents._installers import InstallOptions
from roost.agents._loader import EntryPointError, load_entry
from roost.agents._manifest import (
    MANIFEST_FILE,
    AgentManifest,
    ManifestError,
    ModelNeeds,
    RunsOn,
    Runtime,
    ToolDecl,
    load_manifest,
    parse_manifest,
)
from roost.agents._upload import pack_agent

__all__ = [
    "MANIFEST_FILE",
    "AgentManifest",
    "BundleError",
    "DependencyError",
    "EntryPointError",
    "InstallOptions",
    "ManifestError",
    "ModelNeeds",
    "OutputCallback",
    "PreparedEnv",
    "RunsOn",
    "Runtime",
    "ToolDecl",
    "agent_path",
    "agent_venv",
    "environments_linked",
    "find_dependencies",
    "load_entry",
    "load_manifest",
    "pack_agent",
    "pack_folder",
    "parse_manifest",
    "prepare_environment",
    "unpack_bundle",
]

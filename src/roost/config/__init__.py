"""Configuration: ``config.toml`` + ``ROOST_*`` environment variables (docs/configuration.md)."""

from roost.config._client import ClientSettings, client_config_path, load_client_settings
from roost.config._settings import (
    GRPC_PORTS,
    WORKER_ROLES,
    BusConfig,
    ConfigError,
    DistributedConfig,
    EmbeddingConfig,
    InferenceConfig,
    LogConfig,
    RuntimeConfig,
    Settings,
    StateConfig,
    WorkflowsConfig,
    config_path,
    default_home,
    load_settings,
)

__all__ = [
    "GRPC_PORTS",
    "WORKER_ROLES",
    "BusConfig",
    "ClientSettings",
    "ConfigError",
    "DistributedConfig",
    "EmbeddingConfig",
    "InferenceConfig",
    "LogConfig",
    "RuntimeConfig",
    "Settings",
    "StateConfig",
    "WorkflowsConfig",
    "client_config_path",
    "config_path",
    "default_home",
    "load_client_settings",
    "load_settings",
]

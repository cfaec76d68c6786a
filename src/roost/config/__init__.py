"""Configuration: ``config.toml`` + ``ROOST_*`` environment variables (docs/configuration.md)."""

from roost.config._settings import (
    BusConfig,
    ConfigError,
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
    "BusConfig",
    "ConfigError",
    "EmbeddingConfig",
    "InferenceConfig",
    "LogConfig",
    "RuntimeConfig",
    "Settings",
    "StateConfig",
    "WorkflowsConfig",
    "config_path",
    "default_home",
    "load_settings",
]

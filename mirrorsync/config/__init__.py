"""Configuration: one JSON Schema validates the YAML file, then frozen typed objects."""

from mirrorsync.config.load import DEFAULT_CONFIG_PATH, load_config, validate_config_data
from mirrorsync.config.model import (
    Config,
    Credentials,
    IrisSettings,
    ItemSettings,
    MemberConfig,
    MirrorConfig,
    RetrySettings,
    SshConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "Credentials",
    "IrisSettings",
    "ItemSettings",
    "MemberConfig",
    "MirrorConfig",
    "RetrySettings",
    "SshConfig",
    "load_config",
    "validate_config_data",
]

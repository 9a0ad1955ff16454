"""Click options and look-ups shared by every command module (one definition each)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mirrorsync.config import load_config
from mirrorsync.config.load import default_config_path
from mirrorsync.config.model import Config, MemberConfig, MirrorConfig

if TYPE_CHECKING:
    from mirrorsync.core.engine import MemberLink


def config_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``-c/--config FILE``; the value is resolved by `load`."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Configuration file [default: $MIRRORSYNC_CONFIG or /etc/mirrorsync/config.yaml].",
    )(function)


def mirror_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--mirror NAME`` (repeatable)."""
    return click.option(
        "--mirror",
        "mirror_names",
        multiple=True,
        help="Only this mirror (repeatable) [default: every configured mirror].",
    )(function)


def config_path_or_default(config_path: Path | None) -> Path:
    """``-c`` if given, else $MIRRORSYNC_CONFIG, else /etc/mirrorsync/config.yaml."""
    return config_path or default_config_path()


def load(config_path: Path | None) -> Config:
    """Load and validate the configuration named by ``-c`` (ConfigError: exit 78)."""
    return load_config(config_path_or_default(config_path))


def select_mirrors(config: Config, names: Sequence[str]) -> list[MirrorConfig]:
    """The mirrors named by ``--mirror`` (all if none); an unknown name is a usage error (64)."""
    if not names:
        return list(config.mirrors)
    known = {mirror.name for mirror in config.mirrors}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.UsageError(
            f"--mirror {unknown[0]}: no such mirror in the configuration "
            f"(configured: {', '.join(sorted(known))})"
        )
    return [config.mirror(name) for name in names]


def connector(config: Config) -> Callable[[MemberConfig], MemberLink]:
    """Opens an SSH connection per member (through its jump host when one is configured)."""
    # Imported here so that `config validate` and `--help` never load paramiko.
    from mirrorsync.ssh.endpoints import member_connection

    def connect(member: MemberConfig) -> MemberLink:
        return member_connection(config, member)

    return connect

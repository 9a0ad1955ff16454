"""Frozen, typed configuration objects, built only from a validated document."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mirrorsync.config.service import DaemonSettings, MonitoringSettings, Schedule
from mirrorsync.errors import ConfigError

# Item groups for IRIS <= 2025.1: each class keeps data (D), index (I) and stream (S) globals,
# which must travel together (an index node without its record breaks uniqueness checks).
ITEM_GROUP_CLASSES: dict[str, str] = {
    "clients": "OAuth2.Server.Client",
    "client_metadata": "OAuth2.Client.MetaData",
    "server_configuration": "OAuth2.Server.Configuration",
    "client_applications": "OAuth2.Client",
    "server_definitions": "OAuth2.ServerDefinition",
}
STORAGE_SUFFIXES = ("D", "I", "S")


@dataclass(frozen=True)
class JumpHostConfig:
    """A jump host (ProxyJump) reached directly, through which a member is reached."""

    host: str
    user: str
    identity_file: Path
    port: int = 22


@dataclass(frozen=True)
class SshConfig:
    """SSH settings shared by every member."""

    known_hosts: Path
    connect_timeout: float = 10
    banner_timeout: float = 15
    auth_timeout: float = 15
    command_timeout: float = 120
    transfer_timeout: float = 300
    jump_host: JumpHostConfig | None = None
    """The global jump host (members without their own ``jump_host`` key use it)."""


@dataclass(frozen=True)
class Credentials:
    """Where the IRIS login comes from. Values are read only when a session needs them."""

    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    password_credential: str | None = None
    """A systemd credential name: the password is read from $CREDENTIALS_DIRECTORY/NAME."""

    def resolve(self) -> tuple[str, str]:
        """Return (username, password), reading the environment or file now.

        Error messages name the variable or file, never the value.
        """
        username = self.username
        if username is None and self.username_env is not None:
            username = os.environ.get(self.username_env)
            if not username:
                raise ConfigError(
                    f"iris.credentials.username_env: environment variable {self.username_env} "
                    "is not set or empty"
                )
        if username is None:  # pragma: no cover - the schema requires one of them
            raise ConfigError("iris.credentials: no username configured")
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ConfigError(
                    f"iris.credentials.password_env: environment variable {self.password_env} "
                    "is not set"
                )
        elif self.password_file is not None:
            try:
                mode = self.password_file.stat().st_mode & 0o777
            except OSError as exc:
                raise ConfigError(
                    f"iris.credentials.password_file: cannot read {self.password_file}: "
                    f"{exc.strerror}"
                ) from None
            if mode & 0o007:
                raise ConfigError(
                    f"iris.credentials.password_file: {self.password_file} is readable by every "
                    f"user (mode {mode:04o}); run: chmod o-rwx {self.password_file}"
                )
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"iris.credentials.password_file: cannot read {self.password_file}: "
                    f"{exc.strerror}"
                ) from None
            password = text.splitlines()[0] if text else ""
        elif self.password_credential is not None:
            password = _read_credential(self.password_credential)
        else:  # pragma: no cover - the schema requires one of them
            raise ConfigError("iris.credentials: no password source configured")
        if "\n" in password or "\r" in password or "\n" in username or "\r" in username:
            raise ConfigError("iris.credentials: username and password must be single lines")
        return username, password


def _read_credential(name: str) -> str:
    """The first line of systemd credential ``name``; errors name the credential, never a value."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            f"iris.credentials.password_credential: $CREDENTIALS_DIRECTORY is not set (run "
            f"mirrorsync from a systemd unit with LoadCredential={name}:...)"
        )
    path = Path(directory) / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"iris.credentials.password_credential: cannot read credential {name} ({path}): "
            f"{exc.strerror}"
        ) from None
    return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class IrisSettings:
    """How to talk to IRIS on the members."""

    namespace: str = "%SYS"
    credentials: Credentials | None = None
    allow_newer_to_older: bool = False
    """Allow copying from a newer primary to an older member (rolling upgrades)."""


@dataclass(frozen=True)
class ItemSettings:
    """Which OAuth2 globals make up the item set."""

    groups: tuple[str, ...] = ("clients", "client_metadata")
    extra_globals: tuple[str, ...] = ()

    def global_names(self) -> tuple[str, ...]:
        """Configured global names (no caret), in a stable order, without duplicates."""
        names: list[str] = []
        for group in self.groups:
            names.extend(ITEM_GROUP_CLASSES[group] + suffix for suffix in STORAGE_SUFFIXES)
        for name in self.extra_globals:
            if name not in names:
                names.append(name)
        return tuple(names)


@dataclass(frozen=True)
class SafetySettings:
    """Deletion guard, snapshot retention, leftover clean-up."""

    max_deletes: int = 5
    snapshot_keep: int = 20
    snapshot_max_age_days: float = 30
    stale_after: float = 3600


@dataclass(frozen=True)
class ReportSettings:
    """How drift reports show records."""

    secret_fields: tuple[str, ...] = ()
    """More fields shown only as present/absent + fingerprint: ``FIELD`` or ``GLOBAL:FIELD``."""


@dataclass(frozen=True)
class RetrySettings:
    """Retries of transient transport steps."""

    attempts: int = 3
    initial_wait: float = 1.0
    max_wait: float = 10.0


@dataclass(frozen=True)
class MemberConfig:
    """One mirror member reachable over SSH."""

    name: str
    host: str
    user: str
    identity_file: Path
    instance: str
    port: int = 22
    iris_command: str = "iris"
    sudo_user: str | None = None
    """Run ``iris session`` through ``sudo -n -u`` this user (the instance owner), or directly."""
    jump_host: JumpHostConfig | None = None
    """The jump host this member is reached through (the global one already applied), or None."""


@dataclass(frozen=True)
class MirrorConfig:
    """One mirror and its members."""

    name: str
    members: tuple[MemberConfig, ...]
    remote_tmp_dir: str = "/tmp"  # noqa: S108 - a parent for a private 0700 directory
    schedule: Schedule | None = None
    """Overrides ``daemon.schedule`` for this mirror."""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    mirrors: tuple[MirrorConfig, ...]
    state_dir: Path = Path("/var/lib/mirrorsync")
    ssh: SshConfig = field(default_factory=lambda: SshConfig(Path("/etc/mirrorsync/known_hosts")))
    iris: IrisSettings = field(default_factory=IrisSettings)
    items: ItemSettings = field(default_factory=ItemSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)

    def mirror(self, name: str) -> MirrorConfig:
        """The mirror called ``name``; ConfigError naming the known ones otherwise."""
        for mirror in self.mirrors:
            if mirror.name == name:
                return mirror
        known = ", ".join(m.name for m in self.mirrors)
        raise ConfigError(f"{self.path}: no mirror named {name!r} (configured: {known})")

"""Read a YAML config file, validate it against the schema, build frozen objects."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mirrorsync.config.model import (
    Config,
    Credentials,
    IrisSettings,
    ItemSettings,
    JumpHostConfig,
    MemberConfig,
    MirrorConfig,
    ReportSettings,
    RetrySettings,
    SafetySettings,
    SshConfig,
)
from mirrorsync.config.service import build_daemon, build_monitoring, build_schedule, check_jitter
from mirrorsync.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/mirrorsync/config.yaml")


@cache
def schema() -> dict[str, Any]:
    """The configuration JSON Schema shipped in the package."""
    text = resources.files("mirrorsync.config").joinpath("schema.yaml").read_text("utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def default_config_path() -> Path:
    """``$MIRRORSYNC_CONFIG`` if set, else /etc/mirrorsync/config.yaml."""
    env = os.environ.get("MIRRORSYNC_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def _json_path(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def validate_config_data(data: Any, source: str) -> list[str]:
    """Every schema violation in ``data`` as ``SOURCE: At 'path': message`` lines."""
    validator = jsonschema.Draft202012Validator(schema())
    messages = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        # For oneOf/anyOf the top message is vague; the most relevant sub-error says more.
        best = jsonschema.exceptions.best_match([error, *(error.context or [])]) or error
        where = _json_path(best.absolute_path)
        message = best.message
        # Combinator failures print whole instances (noisy, possibly sensitive): the schema
        # carries a human sentence for them in `x-error`.
        hint = error.schema.get("x-error") if isinstance(error.schema, dict) else None
        if hint and error.validator in ("oneOf", "anyOf", "not"):
            where, message = _json_path(error.absolute_path), hint
        messages.append(f"{source}: At '{where}': {message}")
    return messages


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None


def _resolve(base: Path, value: str) -> Path:
    """Paths in the config are relative to the config file's directory."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def load_config(path: Path) -> Config:
    """Load and validate ``path``; raise ConfigError listing every problem."""
    data = _read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    problems = validate_config_data(data, str(path))
    if problems:
        raise ConfigError("\n".join(problems))
    return _build(path, data)


def _jump_host(base: Path, data: Mapping[str, Any] | None) -> JumpHostConfig | None:
    if data is None:
        return None
    return JumpHostConfig(
        host=data["host"],
        port=data.get("port", 22),
        user=data["user"],
        identity_file=_resolve(base, data["identity_file"]),
    )


def _build(path: Path, data: Mapping[str, Any]) -> Config:
    base = path.resolve().parent
    ssh = data.get("ssh", {})
    global_jump = _jump_host(base, ssh.get("jump_host"))
    iris = data.get("iris", {})
    items = data.get("items", {})
    retry = data.get("retry", {})
    creds = iris.get("credentials")
    credentials = None
    if creds is not None:
        credentials = Credentials(
            username=creds.get("username"),
            username_env=creds.get("username_env"),
            password_env=creds.get("password_env"),
            password_file=_resolve(base, creds["password_file"])
            if "password_file" in creds
            else None,
            password_credential=creds.get("password_credential"),
        )
    mirrors = []
    seen_mirrors: set[str] = set()
    for index, mirror in enumerate(data["mirrors"]):
        if mirror["name"] in seen_mirrors:
            raise ConfigError(f"{path}: At 'mirrors[{index}].name': duplicate mirror name")
        seen_mirrors.add(mirror["name"])
        members = []
        seen: set[str] = set()
        endpoints: dict[tuple[str, int], str] = {}
        for member_index, member in enumerate(mirror["members"]):
            endpoint = (member["host"], member.get("port", 22))
            if endpoint in endpoints:
                raise ConfigError(
                    f"{path}: At 'mirrors[{index}].members[{member_index}]': "
                    f"{member['name']!r} has the same host and port as "
                    f"{endpoints[endpoint]!r} ({endpoint[0]}:{endpoint[1]})"
                )
            endpoints[endpoint] = member["name"]
            if member["name"] in seen:
                raise ConfigError(
                    f"{path}: At 'mirrors[{index}].members[{member_index}].name': "
                    f"duplicate member name {member['name']!r}"
                )
            seen.add(member["name"])
            members.append(
                MemberConfig(
                    name=member["name"],
                    host=member["host"],
                    port=member.get("port", 22),
                    user=member["user"],
                    identity_file=_resolve(base, member["identity_file"]),
                    instance=member["instance"],
                    iris_command=member.get("iris_command", "iris"),
                    sudo_user=member.get("sudo_user"),
                    # A member's own jump_host (null = direct) wins over ssh.jump_host.
                    jump_host=_jump_host(base, member["jump_host"])
                    if "jump_host" in member
                    else global_jump,
                )
            )
        mirrors.append(
            MirrorConfig(
                name=mirror["name"],
                members=tuple(members),
                remote_tmp_dir=mirror.get("remote_tmp_dir", "/tmp"),  # noqa: S108
                schedule=build_schedule(path, f"mirrors[{index}].schedule", mirror["schedule"])
                if "schedule" in mirror
                else None,
            )
        )
    config = Config(
        path=path,
        mirrors=tuple(mirrors),
        state_dir=_resolve(base, data.get("state_dir", "/var/lib/mirrorsync")),
        ssh=SshConfig(
            known_hosts=_resolve(base, ssh.get("known_hosts", "/etc/mirrorsync/known_hosts")),
            connect_timeout=ssh.get("connect_timeout", 10),
            banner_timeout=ssh.get("banner_timeout", 15),
            auth_timeout=ssh.get("auth_timeout", 15),
            command_timeout=ssh.get("command_timeout", 120),
            transfer_timeout=ssh.get("transfer_timeout", 300),
            jump_host=global_jump,
        ),
        iris=IrisSettings(
            namespace=iris.get("namespace", "%SYS"),
            credentials=credentials,
            allow_newer_to_older=iris.get("allow_newer_to_older", False),
        ),
        items=ItemSettings(
            groups=tuple(items.get("groups", ("clients", "client_metadata"))),
            extra_globals=tuple(items.get("extra_globals", ())),
        ),
        retry=RetrySettings(
            attempts=retry.get("attempts", 3),
            initial_wait=retry.get("initial_wait", 1.0),
            max_wait=retry.get("max_wait", 10.0),
        ),
        safety=SafetySettings(
            max_deletes=data.get("safety", {}).get("max_deletes", 5),
            snapshot_keep=data.get("safety", {}).get("snapshot_keep", 20),
            snapshot_max_age_days=data.get("safety", {}).get("snapshot_max_age_days", 30),
            stale_after=data.get("safety", {}).get("stale_after", 3600),
        ),
        report=ReportSettings(
            secret_fields=tuple(data.get("report", {}).get("secret_fields", ())),
        ),
        daemon=build_daemon(path, data.get("daemon", {})),
        monitoring=build_monitoring(base, data.get("monitoring", {})),
    )
    check_jitter(path, config)
    return config

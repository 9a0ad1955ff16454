"""Configuration of mirrorsync as a service: daemon schedule, monitoring, metrics, hooks.

Kept apart from `model` so the service keys (``daemon:``, ``monitoring:``, a mirror's
``schedule:``) live in one place; `load` calls the ``build_*`` functions on validated data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mirrorsync.errors import ConfigError

if TYPE_CHECKING:
    from mirrorsync.config.model import Config, MirrorConfig

HOOK_EVENTS = ("start", "success", "drift", "failure")


@dataclass(frozen=True)
class Schedule:
    """When the daemon runs a mirror: every N seconds, or a cron expression in a time zone."""

    every: float | None = 300.0
    cron: str | None = None
    timezone: str = "UTC"

    def describe(self) -> str:
        """``every 60s`` or ``cron '*/5 * * * *' (UTC)``, for logs and status."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.every:g}s"


@dataclass(frozen=True)
class DaemonSettings:
    """`mirrorsync daemon`: what runs, when, and how long a run may take."""

    action: str = "sync"
    schedule: Schedule = field(default_factory=Schedule)
    run_at_start: bool = True
    jitter: float = 0.0
    misfire_grace_time: float = 300.0
    run_deadline: float = 1800.0
    wedged_after: float | None = None
    """Seconds past ``run_deadline`` after which a run that has not returned is wedged (the
    watchdog is starved so systemd restarts the process); None = `wedged_after(config)`."""


@dataclass(frozen=True)
class HookSpec:
    """One hook: a command (argv, no shell) or an HTTP(S) URL to ping."""

    command: tuple[str, ...] | None = None
    url: str | None = None
    method: str = "POST"


@dataclass(frozen=True)
class HookSettings:
    """Hooks per event; each runs off the main path, bounded by ``timeout`` seconds."""

    timeout: float = 10.0
    start: tuple[HookSpec, ...] = ()
    success: tuple[HookSpec, ...] = ()
    drift: tuple[HookSpec, ...] = ()
    failure: tuple[HookSpec, ...] = ()

    def for_event(self, event: str) -> tuple[HookSpec, ...]:
        """The hooks configured for ``event`` (one of `HOOK_EVENTS`)."""
        hooks: tuple[HookSpec, ...] = getattr(self, event)
        return hooks

    @property
    def any(self) -> bool:
        """Whether any hook is configured."""
        return any(self.for_event(event) for event in HOOK_EVENTS)


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics: a textfile (node_exporter) and/or a loopback HTTP listener."""

    textfile: Path | None = None
    port: int | None = None
    address: str = "127.0.0.1"


@dataclass(frozen=True)
class MonitoringSettings:
    """Staleness bound for `mirrorsync status`, metrics and hooks (every mode)."""

    stale_after: float = 3600.0
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    hooks: HookSettings = field(default_factory=HookSettings)


def schedule_of(config: Config, mirror: MirrorConfig) -> Schedule:
    """The mirror's own schedule, else ``daemon.schedule``."""
    return mirror.schedule or config.daemon.schedule


def wedged_after(config: Config) -> float:
    """Seconds past the run deadline before a still-running run counts as wedged.

    A run notices its deadline only at a step boundary, so it may overrun by one step: at most
    ``retry.attempts`` tries of the longest SSH deadline. Plus a minute of slack.
    """
    if config.daemon.wedged_after is not None:
        return config.daemon.wedged_after
    longest = max(config.ssh.command_timeout, config.ssh.transfer_timeout)
    return config.retry.attempts * longest + 60


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: float | str) -> float:
    """Seconds from a schema-valid duration: a number, or ``90s``/``5m``/``1h``/``1d``/``500ms``."""
    if isinstance(value, int | float):
        return float(value)
    unit = "ms" if value.endswith("ms") else value[-1]
    return float(value[: -len(unit)]) * _DURATION_UNITS[unit]


def build_schedule(path: Path, where: str, data: Mapping[str, Any]) -> Schedule:
    """Build a schedule, checking what the schema cannot: the time zone and the cron fields."""
    timezone = data.get("timezone", "UTC")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: At '{where}.timezone': unknown time zone {timezone!r} (an IANA name such "
            "as UTC or Europe/Berlin)"
        ) from None
    if "cron" in data:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(data["cron"], timezone=zone)
        except ValueError as exc:
            raise ConfigError(
                f"{path}: At '{where}.cron': invalid crontab expression {data['cron']!r}: {exc}"
            ) from None
        return Schedule(every=None, cron=data["cron"], timezone=timezone)
    every = parse_duration(data["every"])
    if every < 1:
        raise ConfigError(f"{path}: At '{where}.every': the interval must be at least 1s")
    return Schedule(every=every, cron=None, timezone=timezone)


def build_daemon(path: Path, data: Mapping[str, Any]) -> DaemonSettings:
    """``daemon:`` from validated data."""
    schedule = build_schedule(path, "daemon.schedule", data.get("schedule", {"every": "5m"}))
    wedged = data.get("wedged_after")
    return DaemonSettings(
        action=data.get("action", "sync"),
        schedule=schedule,
        run_at_start=data.get("run_at_start", True),
        jitter=parse_duration(data.get("jitter", 0)),
        misfire_grace_time=parse_duration(data.get("misfire_grace_time", 300)),
        run_deadline=parse_duration(data.get("run_deadline", 1800)),
        wedged_after=parse_duration(wedged) if wedged is not None else None,
    )


def _hooks(data: Mapping[str, Any]) -> HookSettings:
    def specs(event: str) -> tuple[HookSpec, ...]:
        return tuple(
            HookSpec(
                command=tuple(hook["command"]) if "command" in hook else None,
                url=hook.get("url"),
                method=hook.get("method", "POST"),
            )
            for hook in data.get(event, ())
        )

    return HookSettings(
        timeout=parse_duration(data.get("timeout", 10)),
        start=specs("start"),
        success=specs("success"),
        drift=specs("drift"),
        failure=specs("failure"),
    )


def build_monitoring(base: Path, data: Mapping[str, Any]) -> MonitoringSettings:
    """``monitoring:`` from validated data; relative paths are relative to ``base``."""
    metrics = data.get("metrics", {})
    textfile = None
    if "textfile" in metrics:
        textfile = Path(metrics["textfile"]).expanduser()
        textfile = textfile if textfile.is_absolute() else base / textfile
    return MonitoringSettings(
        stale_after=parse_duration(data.get("stale_after", 3600)),
        metrics=MetricsSettings(
            textfile=textfile,
            port=metrics.get("port"),
            address=metrics.get("address", "127.0.0.1"),
        ),
        hooks=_hooks(data.get("hooks", {})),
    )


def check_jitter(path: Path, config: Config) -> None:
    """Jitter must stay below every interval, so runs keep their order and slots."""
    jitter = config.daemon.jitter
    if not jitter:
        return
    for index, mirror in enumerate(config.mirrors):
        schedule = schedule_of(config, mirror)
        if schedule.every is not None and jitter >= schedule.every:
            where = f"mirrors[{index}].schedule" if mirror.schedule else "daemon.schedule"
            raise ConfigError(
                f"{path}: At 'daemon.jitter': {jitter:g}s is not shorter than the interval of "
                f"{where} ({schedule.every:g}s)"
            )

"""structlog set-up: pretty on a TTY, JSON lines otherwise, always on stderr.

stdout is reserved for the report (text or JSON) so scripts can parse it. In JSON mode an
exception is rendered as structured data (``exception`` key), never lost.

Under systemd (stderr is the journal stream named by ``$JOURNAL_STREAM``) each line starts with
its syslog priority, ``<3>`` for errors, which journald strips and stores (SyslogLevelPrefix=
is on by default), so ``journalctl -p err`` shows exactly mirrorsync's errors.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

SYSLOG_PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "warn": 4}
"""structlog level -> syslog priority (info 6 and debug 7 otherwise)."""


def stderr_is_journal() -> bool:
    """Whether stderr is the journald stream systemd connected (``$JOURNAL_STREAM`` is
    ``DEVICE:INODE`` of it; a child whose stderr was redirected elsewhere inherits the variable,
    so the file itself is compared)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        status = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


class _PriorityPrefix:
    """Wraps the final renderer: ``<N>`` + the rendered line (sd-daemon(3) prefixes)."""

    def __init__(self, renderer: structlog.typing.Processor) -> None:
        self.renderer = renderer

    def __call__(
        self, logger: structlog.typing.WrappedLogger, name: str, event: structlog.typing.EventDict
    ) -> str:
        priority = SYSLOG_PRIORITY.get(str(event.get("level", name)), 7 if name == "debug" else 6)
        rendered = self.renderer(logger, name, event)
        if isinstance(rendered, bytes | bytearray):
            rendered = rendered.decode("utf-8", "replace")
        return f"<{priority}>{rendered}"


def configure_logging(
    level: str = "info", fmt: LogFormat = "auto", *, journal: bool | None = None
) -> None:
    """Configure structlog for the process (idempotent). ``journal`` (default: detected)
    prefixes each line with its syslog priority for journald."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        processors.append(structlog.processors.dict_tracebacks)
        renderer = structlog.processors.JSONRenderer()
    if journal if journal is not None else stderr_is_journal():
        renderer = _PriorityPrefix(renderer)
    processors.append(renderer)
    # paramiko logs transport-thread noise through stdlib logging; mirrorsync's SSH layer turns
    # every failure into an error of its own, so keep paramiko's records off the terminal.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )

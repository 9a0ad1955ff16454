"""One recorded run of one mirror, the same for `sync`, `drift` and each daemon run.

The caller holds the mirror's lock. A run: fire the ``start`` hook, run the engine (with a stop
check: deadline or SIGTERM), write the state file, fire ``success``/``drift``/``failure``. An
unexpected exception becomes an ERROR report (recorded like any failure), never a lost run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from mirrorsync.config.model import Config, MirrorConfig
from mirrorsync.core.engine import Connector, MirrorRun, StopCheck
from mirrorsync.core.report import MemberReport, MirrorReport
from mirrorsync.errors import ConfigError
from mirrorsync.exitcodes import ExitStatus
from mirrorsync.service.hooks import HookRunner, event_for
from mirrorsync.service.lock import holding
from mirrorsync.service.metrics import MirrorsyncCollector, make_registry, write_textfile
from mirrorsync.service.signals import routed_signals
from mirrorsync.service.state import (
    RunTimes,
    build_state,
    previous_state,
    read_state,
    write_state,
)

log = structlog.get_logger("mirrorsync.run")


@dataclass
class RunResult:
    """A finished, recorded run."""

    report: MirrorReport
    state: dict[str, Any]


def summary_text(state: dict[str, Any]) -> str:
    """A few lines for hook bodies: outcome, members, error (no secrets by construction)."""
    lines = [
        f"mirror {state['mirror']}: {state['action']} {state['outcome']} "
        f"(exit {state['exit_code']}), primary {state['primary'] or '-'}"
    ]
    for member in state["members"]:
        count = f" ({member['differences']} records)" if member["differences"] else ""
        lines.append(f"{member['name']}: {member['status'] or 'not handled'}{count}")
    if state["error"]:
        lines.append(f"error: {state['error']}")
    return "\n".join(lines)


def run_one(
    config: Config,
    mirror: MirrorConfig,
    connector: Connector,
    action: str,
    *,
    mode: str,
    stop: StopCheck | None = None,
    hooks: HookRunner | None = None,
    allow_deletes: bool = False,
) -> RunResult:
    """Run ``action`` ("sync" or "drift") on ``mirror`` and record it (lock held by caller)."""
    started_wall, started = time.time(), time.monotonic()
    if hooks is not None:
        hooks.fire("start", mirror.name)
    log.info("run.started", mirror=mirror.name, action=action, mode=mode)
    stopped: list[str] = []

    def checked_stop() -> str | None:
        reason = stop() if stop is not None else None
        if reason and not stopped:
            stopped.append(reason)
        return reason

    try:
        run = MirrorRun(config, mirror, connector, stop=checked_stop, allow_deletes=allow_deletes)
        report = run.sync() if action == "sync" else run.drift()
    except Exception as exc:
        if isinstance(exc, ConfigError) and mode != "daemon":
            raise  # one-shot: a config problem (an unset password variable) exits 78 at once
        log.exception("run.unexpected_error", mirror=mirror.name)
        report = MirrorReport(mirror.name, action, [MemberReport(m.name) for m in mirror.members])
        report.refusal = f"unexpected error: {type(exc).__name__}: {exc}"
    times = RunTimes(started_wall, time.time(), time.monotonic() - started)
    state = build_state(
        report,
        times,
        mode=mode,
        previous=previous_state(config.state_dir, mirror.name),
        stopped=stopped[0] if stopped else None,
    )
    try:
        write_state(config.state_dir, state)
    except OSError as exc:
        log.error("state.write_failed", mirror=mirror.name, error=str(exc))
    log.info(
        "run.finished",
        mirror=mirror.name,
        action=action,
        mode=mode,
        outcome=state["outcome"],
        seconds=state["duration_seconds"],
        abandoned=state["abandoned"],
    )
    if hooks is not None and stopped and _operator_stop(stopped[0]):
        # A restart or an operator's Ctrl-C is not a failure worth paging anyone for; the state
        # file still records the run as abandoned.
        log.info("hooks.skipped", mirror=mirror.name, reason=stopped[0])
    elif hooks is not None:
        hooks.fire(
            event_for(state["outcome"]),
            mirror.name,
            outcome=state["outcome"],
            exit_code=state["exit_code"],
            summary=summary_text(state),
        )
    return RunResult(report, state)


def disk_states(config: Config) -> dict[str, dict[str, Any] | None]:
    """Every configured mirror's last state from disk (None: no run yet or unreadable)."""
    states: dict[str, dict[str, Any] | None] = {}
    for mirror in config.mirrors:
        try:
            states[mirror.name] = read_state(config.state_dir, mirror.name)
        except ValueError as exc:
            log.warning("state.unreadable", mirror=mirror.name, error=str(exc))
            states[mirror.name] = None
    return states


def write_metrics_file(config: Config) -> None:
    """Rewrite the configured metrics textfile from the state files (one-shot modes)."""
    path = config.monitoring.metrics.textfile
    if path is None:
        return
    collector = MirrorsyncCollector(
        lambda: disk_states(config), stale_after=lambda: config.monitoring.stale_after
    )
    try:
        write_textfile(path, make_registry(collector))
    except OSError as exc:
        log.error("metrics.write_failed", path=str(path), error=str(exc))


def _operator_stop(reason: str) -> bool:
    """Whether a run was stopped by a signal (shutdown, restart, Ctrl-C), not a deadline."""
    return reason.startswith("the daemon is stopping") or reason.endswith(" received")


INTERRUPTED = threading.Event()
"""Set when Ctrl-C stopped a one-shot run (the CLI then exits 130 after the report)."""


def run_mirrors_locked(
    config: Config,
    mirrors: Sequence[MirrorConfig],
    connector: Connector,
    action: str,
    *,
    lock_wait: float = 0.0,
    allow_deletes: bool = False,
) -> list[MirrorReport]:
    """`sync`/`drift` from the command line: hold every selected mirror's lock (LockBusy if
    another run has one, after ``lock_wait`` seconds), run and record each mirror, then
    rewrite the metrics textfile. SIGTERM or a first Ctrl-C stops the run at a safe step
    boundary (the report is still printed); a second Ctrl-C exits at once."""
    settings = config.monitoring.hooks
    hooks = HookRunner(settings) if settings.any else None
    stop_reason: list[str] = []
    reports: list[MirrorReport] = []

    def stop_requested(signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGINT:
            if INTERRUPTED.is_set():
                # A second Ctrl-C: leave now. Safe: every import is one transaction verified
                # by read-back on the next run, and the lock is released by the kernel.
                log.warning("run.aborted", signal=name)
                os._exit(int(ExitStatus.INTERRUPTED))
            INTERRUPTED.set()
        stop_reason.append(f"{name} received")
        log.warning("run.stop_requested", signal=name)

    try:
        with (
            holding(config.state_dir, [m.name for m in mirrors], wait=lock_wait),
            routed_signals({signal.SIGTERM: stop_requested, signal.SIGINT: stop_requested}),
        ):
            for mirror in mirrors:
                result = run_one(
                    config,
                    mirror,
                    connector,
                    action,
                    mode=action,
                    stop=lambda: stop_reason[0] if stop_reason else None,
                    hooks=hooks,
                    allow_deletes=allow_deletes,
                )
                reports.append(result.report)
    finally:
        if hooks is not None:
            # One-shot: give queued hooks (e.g. the final ping) their timeout to finish.
            hooks.close(timeout=settings.timeout + 1)
    write_metrics_file(config)
    return reports

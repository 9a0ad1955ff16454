"""`mirrorsync daemon`: APScheduler's BlockingScheduler as the main loop, one job per mirror.

Threads: the main thread runs the scheduler loop (and nothing else); each mirror's runs execute
in the scheduler's thread pool (``max_instances=1``: never two runs of one mirror); hooks have
their own thread; signals are read from a wakeup pipe by their own thread (`signals`), so they
are acted on at once even while the main thread sleeps until the next run, and no lock is ever
taken inside a signal handler.

Safety of a run is the engine's: it checks ``stop()`` at safe step boundaries only (never
between a member's kill and load). ``stop()`` answers for both the per-run deadline and
SIGTERM/SIGINT. A run that does not return within ``run_deadline + wedged_after`` is wedged:
the watchdog job stops sending WATCHDOG=1 and systemd restarts the process (the kernel frees
its locks).

Missed runs are counted from the scheduler's events: runs skipped because the previous one was
still busy (EVENT_JOB_MAX_INSTANCES), runs started later than ``misfire_grace_time``
(EVENT_JOB_MISSED), and run times coalesced into one (a submission whose due time lies past
the next expected one: APScheduler drops those silently, so they are counted here by walking
the trigger). Jitter is applied as a random delay at the start of a run, not as trigger jitter,
so the trigger's fire times stay exact and these counts stay exact.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mirrorsync.config import load_config
from mirrorsync.config.model import Config
from mirrorsync.config.service import Schedule, schedule_of, wedged_after
from mirrorsync.core.engine import Connector
from mirrorsync.errors import ConfigError
from mirrorsync.exitcodes import ExitStatus
from mirrorsync.service.hooks import HookRunner
from mirrorsync.service.lock import LockBusy, acquire
from mirrorsync.service.metrics import (
    DaemonCounters,
    MetricsServer,
    MirrorsyncCollector,
    make_registry,
    write_textfile,
)
from mirrorsync.service.notify import Notifier, watchdog_interval
from mirrorsync.service.run import disk_states, run_one
from mirrorsync.service.signals import routed_signals

log = structlog.get_logger("mirrorsync.daemon")
JOB_PREFIX = "mirror:"
WATCHDOG_JOB = "watchdog"
MAX_COUNTED_FIRE_TIMES = 100_000


def make_trigger(schedule: Schedule) -> BaseTrigger:
    """The APScheduler trigger of a schedule (no trigger jitter: see the module docstring)."""
    zone = ZoneInfo(schedule.timezone)
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=zone)
    assert schedule.every is not None
    return IntervalTrigger(seconds=schedule.every, timezone=zone)


def count_fire_times(trigger: BaseTrigger, start: datetime, end: datetime) -> int:
    """How many fire times of ``trigger`` lie in ``[start, end)``, ``start`` being one."""
    count = 0
    fire: datetime | None = start
    while fire is not None and fire < end and count < MAX_COUNTED_FIRE_TIMES:
        count += 1
        fire = trigger.get_next_fire_time(fire, fire)
    return count


@dataclass
class ActiveRun:
    """A run in progress (monotonic times)."""

    mirror: str
    started: float
    deadline: float
    wedged_at: float


class _ApschedulerErrors(logging.Handler):
    """APScheduler logs through stdlib logging; keep its errors, in our JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        # Never raise into the scheduler's loop (a broken log stream must not stop it).
        with contextlib.suppress(Exception):
            log.error("scheduler.error", message=record.getMessage(), logger=record.name)


class Daemon:
    """The long-running service. `serve` returns the exit code."""

    def __init__(
        self,
        config_path: Path,
        config: Config,
        connector_factory: Callable[[Config], Connector],
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        watchdog_seconds: float | None = None,
        install_signals: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.connector_factory = connector_factory
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.watchdog_seconds = (
            watchdog_seconds if watchdog_seconds is not None else watchdog_interval()
        )
        self.install_signals = install_signals
        self.rng = rng or random.SystemRandom()
        self.counters = DaemonCounters()
        self.states: dict[str, dict[str, Any] | None] = {}
        self.active: dict[str, ActiveRun] = {}
        self._active_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_reason = ""
        self._starved = False
        self._expected: dict[str, datetime] = {}
        self._triggers: dict[str, BaseTrigger] = {}
        self.hooks = HookRunner(config.monitoring.hooks, on_failure=self.counters.add_hook_failure)
        self.registry = make_registry(
            MirrorsyncCollector(
                self._current_states,
                stale_after=lambda: self.config.monitoring.stale_after,
                counters=self.counters,
            )
        )
        self.metrics_server: MetricsServer | None = None
        # Mirrors added by a reload need threads too: room for twice today's count.
        self.executor = ThreadPoolExecutor(max_workers=max(8, 2 * len(config.mirrors)))
        self.scheduler = BlockingScheduler(
            timezone=ZoneInfo("UTC"),
            executors={"default": self.executor},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self.scheduler.add_listener(
            self._on_job_event,
            EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR,
        )
        self.scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)

    # ---------------------------------------------------------------- lifecycle
    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or a fatal error."""
        aps_logger = logging.getLogger("apscheduler")
        aps_logger.propagate = False
        aps_logger.handlers = [_ApschedulerErrors(level=logging.ERROR)]
        self.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.states = disk_states(self.config)
        metrics = self.config.monitoring.metrics
        if metrics.port is not None:
            self.metrics_server = MetricsServer(self.registry, metrics.address, metrics.port)
            log.info("metrics.listening", address=metrics.address, port=metrics.port)
        self._write_metrics()
        self._schedule_jobs(self.config, None)
        if self.watchdog_seconds:
            self.scheduler.add_job(
                self._feed_watchdog,
                IntervalTrigger(seconds=self.watchdog_seconds),
                id=WATCHDOG_JOB,
                name="watchdog",
                misfire_grace_time=None,
            )
        signals = (
            routed_signals(
                {
                    signal.SIGTERM: self._on_stop_signal,
                    signal.SIGINT: self._on_stop_signal,
                    signal.SIGHUP: self._on_reload_signal,
                }
            )
            if self.install_signals
            else contextlib.nullcontext()
        )
        with signals:
            if not self._stopping.is_set():
                self.scheduler.start()  # blocks until shutdown
            return self._finish()

    def stop(self, reason: str) -> None:
        """Stop taking new runs; running ones stop at their next safe step boundary."""
        if self._stopping.is_set():
            log.info("daemon.already_stopping", reason=reason)
            return
        self._stop_reason = reason
        self._stopping.set()
        running = sorted(self.active)
        log.info("daemon.stopping", reason=reason, running=running)
        self.notifier.stopping(
            f"stopping ({reason}); waiting for {', '.join(running)}" if running else "stopping"
        )
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.shutdown(wait=False)

    def reload(self) -> bool:
        """Re-read and re-validate the config file; a bad one keeps the old config running."""
        with self._reload_lock:
            self.notifier.reloading()
            old = self.config
            try:
                new = load_config(self.config_path)
                self._check_reloadable(old, new)
            except ConfigError as exc:
                first = str(exc).splitlines()[0]
                log.error("reload.rejected", error=str(exc), path=str(self.config_path))
                self.notifier.ready(f"reload rejected, previous configuration kept: {first}")
                return False
            self.config = new
            self.hooks.settings = new.monitoring.hooks
            self._schedule_jobs(new, old)
            self._log_jobs()
            log.info("reload.done", path=str(self.config_path), mirrors=self._mirror_names())
            self.notifier.ready(self._status_line("reloaded"))
            self._write_metrics()
            return True

    def _check_reloadable(self, old: Config, new: Config) -> None:
        if new.state_dir.resolve() != old.state_dir.resolve():
            raise ConfigError(
                f"{self.config_path}: state_dir changed ({old.state_dir} -> {new.state_dir}): "
                "the locks live there, so this needs a restart, not a reload"
            )
        # Compare with what is actually listening (not with the previous config: a second
        # reload that changes the port back must not warn).
        server = self.metrics_server
        listening = (server.address, server.port) if server is not None else None
        wanted = new.monitoring.metrics
        wanted_listener = (wanted.address, wanted.port) if wanted.port is not None else None
        if wanted_listener != listening:
            log.warning(
                "reload.metrics_listener_unchanged",
                listening=listening,
                configured=wanted_listener,
                note="takes effect after a restart",
            )

    def _finish(self) -> int:
        """After the scheduler loop ended: wait for running runs, flush hooks, clean up."""
        bound = self._shutdown_bound()
        waiter = threading.Thread(
            target=lambda: self.executor.shutdown(wait=True),
            daemon=True,
        )
        waiter.start()
        waiter.join(bound)
        wedged = waiter.is_alive()
        self.hooks.close(timeout=self.config.monitoring.hooks.timeout + 1)
        self._write_metrics()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.notifier.close()
        if wedged:
            log.error("daemon.exit_with_wedged_run", running=sorted(self.active), waited=bound)
            sys.stderr.flush()
            os._exit(int(ExitStatus.ERROR))  # a wedged thread would block interpreter exit
        log.info("daemon.stopped", reason=self._stop_reason or "scheduler ended")
        return int(ExitStatus.OK)

    def _shutdown_bound(self) -> float:
        """How long to wait for running runs: until the last of them would count as wedged."""
        now = self.clock()
        with self._active_lock:
            ends = [run.wedged_at - now for run in self.active.values()]
        return max([5.0, *ends])

    def _on_stop_signal(self, signum: int) -> None:
        self.stop(signal.Signals(signum).name)

    def _on_reload_signal(self, _signum: int) -> None:
        # Its own thread: a SIGTERM during a slow reload is still handled at once.
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    # ---------------------------------------------------------------- jobs
    def _mirror_names(self) -> list[str]:
        return [m.name for m in self.config.mirrors]

    def _schedule_jobs(self, new: Config, old: Config | None) -> None:
        """Add, replace or remove one job per mirror; unchanged schedules keep their timing."""
        old_names = {m.name for m in old.mirrors} if old else set()
        new_names = {m.name for m in new.mirrors}
        for name in sorted(old_names - new_names):
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(JOB_PREFIX + name)
            self._expected.pop(JOB_PREFIX + name, None)
            log.info("job.removed", mirror=name)
        for mirror in new.mirrors:
            schedule = schedule_of(new, mirror)
            job_id = JOB_PREFIX + mirror.name
            if old is not None and mirror.name in old_names:
                previous = old.mirror(mirror.name)
                if (
                    schedule_of(old, previous) == schedule
                    and old.daemon.misfire_grace_time == new.daemon.misfire_grace_time
                ):
                    continue
            trigger = make_trigger(schedule)
            self._triggers[job_id] = trigger
            self._expected.pop(job_id, None)
            first: dict[str, Any] = {}
            if new.daemon.run_at_start and mirror.name not in old_names:
                first["next_run_time"] = datetime.now(ZoneInfo("UTC"))
            self.scheduler.add_job(
                self._run_job,
                trigger,
                args=[mirror.name],
                id=job_id,
                name=f"mirror {mirror.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, math.ceil(new.daemon.misfire_grace_time)),
                replace_existing=True,
                **first,
            )

    def _log_jobs(self) -> None:
        config = self.config
        for mirror in config.mirrors:
            job = self.scheduler.get_job(JOB_PREFIX + mirror.name)
            next_run = getattr(job, "next_run_time", None) if job else None
            log.info(
                "job.scheduled",
                mirror=mirror.name,
                action=config.daemon.action,
                schedule=schedule_of(config, mirror).describe(),
                trigger=str(job.trigger) if job else None,
                next_run=next_run.isoformat() if next_run else None,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=config.daemon.misfire_grace_time,
                jitter=config.daemon.jitter,
                run_deadline=config.daemon.run_deadline,
                wedged_after=wedged_after(config),
            )

    def _on_started(self, _event: SchedulerEvent) -> None:
        self._log_jobs()
        log.info(
            "daemon.ready",
            config=str(self.config_path),
            mirrors=self._mirror_names(),
            watchdog_seconds=self.watchdog_seconds,
            notify=self.notifier.enabled,
        )
        self.notifier.ready(self._status_line("started"))
        if self.watchdog_seconds:
            self.notifier.watchdog()
        if self._stopping.is_set():  # a signal came before the scheduler was running
            threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": False}).start()

    def _on_job_event(self, event: SchedulerEvent) -> None:
        job_id = getattr(event, "job_id", "")
        if not job_id.startswith(JOB_PREFIX):
            return
        mirror = job_id[len(JOB_PREFIX) :]
        if event.code == EVENT_JOB_ERROR and isinstance(event, JobExecutionEvent):
            log.error("job.error", mirror=mirror, error=repr(event.exception))
            return
        if event.code == EVENT_JOB_MISSED and isinstance(event, JobExecutionEvent):
            late = "started later than misfire_grace_time"
            self._missed(mirror, 1, late, event.scheduled_run_time)
            return
        if not isinstance(event, JobSubmissionEvent) or not event.scheduled_run_times:
            return
        due = event.scheduled_run_times[-1]
        trigger = self._triggers.get(job_id)
        expected = self._expected.get(job_id)
        if trigger is not None:
            if expected is not None and expected < due:
                skipped = count_fire_times(trigger, expected, due)
                self._missed(mirror, skipped, "coalesced (the daemon could not run them)", due)
            following = trigger.get_next_fire_time(due, due)
            if following is not None:
                self._expected[job_id] = following
        if event.code == EVENT_JOB_MAX_INSTANCES:
            self._missed(mirror, 1, "the previous run was still busy", due)

    def _missed(self, mirror: str, count: int, reason: str, scheduled: datetime) -> None:
        if count <= 0:
            return
        self.counters.add_missed(mirror, count)
        log.warning(
            "run.missed",
            mirror=mirror,
            count=count,
            reason=reason,
            scheduled=scheduled.isoformat(),
            missed_total=self.counters.snapshot()["missed"].get(mirror, 0),
        )

    # ---------------------------------------------------------------- one run
    def _stop_check(self, run: ActiveRun) -> str | None:
        if self._stopping.is_set():
            return f"the daemon is stopping ({self._stop_reason})"
        if self.clock() > run.deadline:
            return f"run deadline of {self.config.daemon.run_deadline:g}s passed"
        return None

    def _run_job(self, name: str) -> None:
        config = self.config
        if self._stopping.is_set() or name not in {m.name for m in config.mirrors}:
            return
        mirror = config.mirror(name)
        if config.daemon.jitter and self._stopping.wait(self.rng.uniform(0, config.daemon.jitter)):
            return
        try:
            lock = acquire(config.state_dir, name, command=f"mirrorsync daemon (pid {os.getpid()})")
        except LockBusy as exc:
            self.counters.add_lock_busy(name)
            log.warning("run.skipped_lock_busy", mirror=name, error=str(exc))
            return
        except OSError as exc:
            log.error("run.lock_failed", mirror=name, error=str(exc))
            return
        now = self.clock()
        deadline = now + config.daemon.run_deadline
        run = ActiveRun(name, now, deadline, deadline + wedged_after(config))
        with self._active_lock:
            self.active[name] = run
        self.counters.set_running(name, True)
        try:
            result = run_one(
                config,
                mirror,
                self.connector_factory(config),
                config.daemon.action,
                mode="daemon",
                stop=lambda: self._stop_check(run),
                hooks=self.hooks,
            )
        finally:
            lock.release()
            with self._active_lock:
                self.active.pop(name, None)
            self.counters.set_running(name, False)
        self.states[name] = result.state
        self.counters.run_finished(name, result.state["outcome"])
        self._write_metrics()
        self.notifier.status(self._status_line())

    # ---------------------------------------------------------------- health and output
    def healthy(self) -> bool:
        """False once a run has gone past its deadline plus ``wedged_after`` without returning."""
        now = self.clock()
        with self._active_lock:
            wedged = [run for run in self.active.values() if now > run.wedged_at]
        if wedged and not self._starved:
            run = wedged[0]
            log.error(
                "watchdog.starved",
                mirror=run.mirror,
                running_seconds=round(now - run.started, 1),
                note="run wedged past its deadline: systemd's watchdog will restart the service",
            )
        self._starved = bool(wedged)
        return not wedged

    def _feed_watchdog(self) -> None:
        if self.healthy():
            self.notifier.watchdog()

    def _current_states(self) -> dict[str, dict[str, Any] | None]:
        return {m.name: self.states.get(m.name) for m in self.config.mirrors}

    def _status_line(self, prefix: str = "") -> str:
        parts = []
        for name, state in self._current_states().items():
            if state is None:
                parts.append(f"{name}: no run yet")
            else:
                parts.append(f"{name}: {state['outcome']} at {state['finished_at']}")
        missed = sum(self.counters.snapshot()["missed"].values())
        text = "; ".join(parts) + (f"; {missed} missed run(s)" if missed else "")
        return f"{prefix}: {text}" if prefix else text

    def _write_metrics(self) -> None:
        path = self.config.monitoring.metrics.textfile
        if path is None:
            return
        try:
            write_textfile(path, self.registry)
        except OSError as exc:
            log.error("metrics.write_failed", path=str(path), error=str(exc))

"""The daemon's scheduling logic in-process, with a fake run and a controlled clock.

The real engine against the lab is in tests/e2e/test_daemon_lab.py; here each run is a fake
`run_one`, so missed-run accounting, the watchdog and reload are tested without SSH and
without waiting for wall-clock time (time-machine moves the scheduler's clock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import time_machine
import yaml
from apscheduler.events import EVENT_JOB_EXECUTED

from mirrorsync.config import load_config
from mirrorsync.core.report import MemberReport, MemberStatus, MirrorReport
from mirrorsync.service import daemon as daemon_module
from mirrorsync.service.daemon import Daemon, count_fire_times, make_trigger
from mirrorsync.service.notify import Notifier
from mirrorsync.service.run import RunResult
from mirrorsync.service.state import RunTimes, build_state

WAIT = 10  # seconds; only ever reached when a test fails


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    """Another test may have bound structlog to a capture stream pytest has closed since."""
    structlog.reset_defaults()


def eventually(predicate: Callable[[], bool]) -> bool:
    """Poll ``predicate`` (a thread's work is in flight) for at most WAIT seconds."""
    done = threading.Event()
    for _ in range(WAIT * 50):
        if predicate():
            return True
        done.wait(0.02)
    return False


class RecordingNotifier(Notifier):
    """Keeps the messages instead of sending them."""

    def __init__(self) -> None:
        super().__init__("@unused")
        self.messages: list[str] = []

    def send(self, *fields: str) -> bool:
        self.messages.append("\n".join(fields))
        return True


def write_config(path: Path, **daemon: Any) -> Path:
    members = [
        {"name": n, "host": f"{n}.example", "user": "u", "identity_file": "k", "instance": "IRIS"}
        for n in ("a", "b")
    ]
    data = {
        "state_dir": str(path.parent / "state"),
        "daemon": {"schedule": {"every": "60s"}, **daemon},
        "mirrors": [{"name": "M1", "members": members}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


class FakeRuns:
    """Stands in for `run_one`: counts runs, optionally blocks until released."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.finished = threading.Semaphore(0)
        self.release = threading.Event()
        self.release.set()
        self.stops: list[Callable[[], str | None]] = []

    def __call__(self, config: Any, mirror: Any, *_: Any, **kwargs: Any) -> RunResult:
        self.stops.append(kwargs["stop"])
        self.started.release()
        assert self.release.wait(WAIT)
        members = [
            MemberReport(m.name, role="x", status=MemberStatus.IN_SYNC) for m in mirror.members
        ]
        report = MirrorReport(mirror.name, "sync", members, primary="a")
        state = build_state(report, RunTimes(0.0, 1.0, 1.0), mode="daemon", previous=None)
        self.finished.release()
        return RunResult(report, state)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    fake = FakeRuns()
    monkeypatch.setattr(daemon_module, "run_one", fake)
    return fake


@pytest.fixture
def serving() -> Iterator[Callable[[Daemon], None]]:
    """Run `Daemon.serve` on a thread; stop and join it after the test."""
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(daemon: Daemon) -> None:
        thread = threading.Thread(target=daemon.serve, daemon=True)
        thread.start()
        started.append((daemon, thread))

    yield start
    for daemon, thread in started:
        daemon.stop("test over")
        thread.join(WAIT)
        assert not thread.is_alive()


def make_daemon(tmp_path: Path, **daemon: Any) -> tuple[Daemon, RecordingNotifier]:
    path = write_config(tmp_path / "config.yaml", **daemon)
    notifier = RecordingNotifier()
    made = Daemon(
        path,
        load_config(path),
        lambda _c: None,  # type: ignore[arg-type,return-value]
        notifier=notifier,
        install_signals=False,
    )
    return made, notifier


def test_count_fire_times_interval_and_cron() -> None:
    """The trigger walk that counts coalesced runs: exact for intervals and cron."""
    from datetime import UTC, datetime, timedelta

    from mirrorsync.config.service import Schedule

    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    every = make_trigger(Schedule(every=60))
    assert 9 == count_fire_times(every, start, start + timedelta(minutes=9))
    assert 0 == count_fire_times(every, start, start)
    cron = make_trigger(Schedule(every=None, cron="*/15 * * * *", timezone="UTC"))
    assert 4 == count_fire_times(cron, start, start + timedelta(hours=1))


def test_coalesced_runs_are_counted_as_missed(
    tmp_path: Path, runs: FakeRuns, serving: Callable[[Daemon], None]
) -> None:
    """The process could not run for 10.5 intervals (suspended, clock jump): one run happens
    (coalesce), the 9 run times it swallowed are counted and logged as missed."""
    daemon, notifier = make_daemon(tmp_path)
    executed = threading.Semaphore(0)
    # APScheduler frees the job's instance slot before it dispatches EVENT_JOB_EXECUTED: after
    # this event the first run no longer counts against max_instances=1.
    daemon.scheduler.add_listener(lambda _event: executed.release(), EVENT_JOB_EXECUTED)
    with time_machine.travel("2026-06-01 12:00:00+00:00", tick=True) as traveller:
        serving(daemon)
        assert executed.acquire(timeout=WAIT)  # run_at_start, fully finished
        assert "READY=1" in notifier.messages[0]
        traveller.shift(630)
        daemon.scheduler.wakeup()
        assert eventually(lambda: 2 == daemon.counters.snapshot()["runs"].get(("M1", "IN_SYNC")))
        assert eventually(lambda: {"M1": 9} == daemon.counters.snapshot()["missed"]), (
            daemon.counters.snapshot()
        )


def test_run_still_busy_counts_as_missed(
    tmp_path: Path, runs: FakeRuns, serving: Callable[[Daemon], None]
) -> None:
    """max_instances=1: a run time that comes while the last run is still going is skipped and
    counted; the busy run is not disturbed."""
    daemon, _ = make_daemon(tmp_path)
    runs.release.clear()
    with time_machine.travel("2026-06-01 12:00:00+00:00", tick=True) as traveller:
        serving(daemon)
        assert runs.started.acquire(timeout=WAIT)
        traveller.shift(61)
        daemon.scheduler.wakeup()
        assert eventually(lambda: {"M1": 1} == daemon.counters.snapshot()["missed"])
        runs.release.set()
        assert runs.finished.acquire(timeout=WAIT)


def test_deadline_and_wedged_run_starve_the_watchdog(tmp_path: Path, runs: FakeRuns) -> None:
    """The stop check reports the deadline; a run past deadline + wedged_after stops the
    WATCHDOG=1 pings (systemd restarts the process); once it returns, pings resume."""
    daemon, notifier = make_daemon(tmp_path, run_deadline="10s", wedged_after="5s")
    now = [1000.0]
    daemon.clock = lambda: now[0]
    runs.release.clear()
    worker = threading.Thread(target=daemon._run_job, args=["M1"])
    worker.start()
    assert runs.started.acquire(timeout=WAIT)
    stop = runs.stops[0]
    assert None is stop()
    now[0] = 1014.0
    assert "run deadline of 10s passed" == stop()
    daemon._feed_watchdog()
    now[0] = 1016.0
    daemon._feed_watchdog()
    assert ["WATCHDOG=1"] == [m for m in notifier.messages if m == "WATCHDOG=1"]
    assert not daemon.healthy()
    runs.release.set()
    worker.join(WAIT)
    daemon._feed_watchdog()
    assert 2 == notifier.messages.count("WATCHDOG=1")
    daemon.stop("SIGTERM")
    assert "the daemon is stopping (SIGTERM)" == stop()


def test_reload_keeps_the_old_config_when_the_new_one_is_bad(tmp_path: Path) -> None:
    """SIGHUP path: a bad file or a changed state_dir is rejected, a good one is applied."""
    daemon, notifier = make_daemon(tmp_path)
    path = daemon.config_path
    path.write_text("mirrors: [")
    assert not daemon.reload()
    assert daemon.config.daemon.schedule.every == 60
    assert notifier.messages[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert notifier.messages[1].startswith("READY=1\nSTATUS=reload rejected")
    write_config(path, schedule={"every": "2m"})
    data = yaml.safe_load(path.read_text())
    data["state_dir"] = str(tmp_path / "elsewhere")
    path.write_text(yaml.safe_dump(data))
    assert not daemon.reload()
    write_config(path, schedule={"every": "2m"})
    assert daemon.reload()
    assert 120 == daemon.config.daemon.schedule.every
    assert "interval[0:02:00]" == str(daemon.scheduler.get_job("mirror:M1").trigger)
    assert notifier.messages[-1].startswith("READY=1\nSTATUS=reloaded")

"""Service building blocks: lock, state, status, metrics, hooks, notify, journald priorities."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
import time_machine
import yaml

from mirrorsync.config import load_config
from mirrorsync.config.service import HookSettings, HookSpec, parse_duration
from mirrorsync.core.report import MemberReport, MemberStatus, MirrorReport
from mirrorsync.errors import ConfigError
from mirrorsync.exitcodes import ExitStatus
from mirrorsync.service import status as service_status
from mirrorsync.service.hooks import HookRunner, event_for, redact_url
from mirrorsync.service.lock import LockBusy, acquire, holding, read_holder
from mirrorsync.service.metrics import (
    DaemonCounters,
    MirrorsyncCollector,
    make_registry,
    render,
    write_textfile,
)
from mirrorsync.service.notify import Notifier, watchdog_interval
from mirrorsync.service.state import RunTimes, build_state, read_state, write_state

BASE_CONFIG: dict[str, Any] = {
    "mirrors": [
        {
            "name": "M1",
            "members": [
                {
                    "name": n,
                    "host": f"{n}.example",
                    "user": "u",
                    "identity_file": "k",
                    "instance": "IRIS",
                }
                for n in ("a", "b")
            ],
        }
    ]
}


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    """Another test may have bound structlog to a capture stream pytest has closed since."""
    structlog.reset_defaults()


def config_file(tmp_path: Path, **top: Any) -> Path:
    data = {**BASE_CONFIG, "state_dir": str(tmp_path / "state"), **top}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def report(outcome_status: MemberStatus, refusal: str | None = None) -> MirrorReport:
    members = [
        MemberReport("a", role="primary", status=MemberStatus.IN_SYNC),
        MemberReport(
            "b",
            role=None if outcome_status == MemberStatus.UNREACHABLE else "backup",
            status=outcome_status,
        ),
    ]
    return MirrorReport("M1", "sync", members, primary="a", refusal=refusal)


# ---------------------------------------------------------------- config
def test_durations_and_service_config(tmp_path: Path) -> None:
    """Durations accept numbers and unit strings; schedule, jitter and hooks are parsed."""
    assert [90.0, 300.0, 3600.0, 0.25, 86400.0] == [
        parse_duration(v) for v in ("90s", "5m", "1h", "250ms", "1d")
    ]
    path = config_file(
        tmp_path,
        daemon={"schedule": {"cron": "*/5 * * * *", "timezone": "Europe/Berlin"}, "jitter": "10s"},
        monitoring={
            "stale_after": "2h",
            "metrics": {"textfile": "m.prom", "port": 9877},
            "hooks": {"failure": [{"url": "https://hc.example/abc/fail"}]},
        },
    )
    config = load_config(path)
    assert "cron '*/5 * * * *' (Europe/Berlin)" == config.daemon.schedule.describe()
    assert (10.0, 7200.0) == (config.daemon.jitter, config.monitoring.stale_after)
    assert tmp_path / "m.prom" == config.monitoring.metrics.textfile
    assert (HookSpec(url="https://hc.example/abc/fail"),) == config.monitoring.hooks.failure


@pytest.mark.parametrize(
    ("daemon", "message"),
    [
        ({"schedule": {"every": "1m", "timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"schedule": {"cron": "61 * * * *"}}, "invalid crontab expression"),
        ({"schedule": {"every": "1m", "cron": "* * * * *"}}, "exactly one of `every`"),
        ({"schedule": {"every": "60s"}, "jitter": "60s"}, "not shorter than the interval"),
        ({"run_deadline": "soon"}, "a duration"),
    ],
)
def test_bad_service_config_is_refused(tmp_path: Path, daemon: Any, message: str) -> None:
    """What the daemon would trip over later is a config error now (exit 78)."""
    with pytest.raises(ConfigError, match=message):
        load_config(config_file(tmp_path, daemon=daemon))


def test_metrics_listener_must_be_loopback(tmp_path: Path) -> None:
    """The unauthenticated /metrics listener may only bind a loopback address."""
    with pytest.raises(ConfigError, match=r"metrics\.address"):
        load_config(config_file(tmp_path, monitoring={"metrics": {"address": "0.0.0.0"}}))  # noqa: S104


# ---------------------------------------------------------------- lock
def test_lock_excludes_and_names_the_holder(tmp_path: Path) -> None:
    """A second acquire fails with the holder's description; release frees it."""
    first = acquire(tmp_path, "M1", command="mirrorsync sync -c x")
    with pytest.raises(LockBusy) as busy:
        acquire(tmp_path, "M1")
    assert f"pid {os.getpid()}" in str(busy.value)
    assert "command: mirrorsync sync -c x" in str(busy.value)
    first.release()
    acquire(tmp_path, "M1").release()


def test_lock_wait_is_bounded_and_polls(tmp_path: Path) -> None:
    """--lock-wait polls until its bound (fake clock: no real waiting)."""
    held = acquire(tmp_path, "M1")
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(LockBusy, match="after waiting 1s"):
        acquire(tmp_path, "M1", wait=1.0, clock=lambda: now[0], sleep=sleep)
    assert 5 == len(sleeps)
    held.release()


def test_holding_takes_all_or_none(tmp_path: Path) -> None:
    """Several mirrors: if one is busy, the ones already taken are released again."""
    busy = acquire(tmp_path, "M2")
    with pytest.raises(LockBusy), holding(tmp_path, ["M1", "M2"]):
        pass
    acquire(tmp_path, "M1").release()  # M1 was released again
    busy.release()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mirrorsync.service.lock import acquire
    acquire(Path(sys.argv[1]), "M1", command="holder-process")
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_lock_between_processes_and_killed_holder(tmp_path: Path) -> None:
    """Two real processes: the second sees the first's pid; SIGKILL frees the lock at once."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert "held" == holder.stdout.readline().strip()
        with pytest.raises(LockBusy) as busy:
            acquire(tmp_path, "M1")
        assert busy.value.holder is not None
        assert (holder.pid, "holder-process") == (
            busy.value.holder["pid"],
            busy.value.holder["command"],
        )
    finally:
        holder.kill()
        holder.wait()
    lock = acquire(tmp_path, "M1")  # no stale lock: the kernel released it
    assert os.getpid() == (read_holder(tmp_path, "M1") or {}).get("pid")
    lock.release()


# ---------------------------------------------------------------- state and status
def test_state_carries_last_success(tmp_path: Path) -> None:
    """A failed run keeps the previous success time and counts consecutive failures."""
    ok = build_state(
        report(MemberStatus.SYNCED), RunTimes(100.0, 110.0, 10.0), mode="sync", previous=None
    )
    write_state(tmp_path, ok)
    failed = build_state(
        report(MemberStatus.UNREACHABLE),
        RunTimes(200.0, 205.0, 5.0),
        mode="daemon",
        previous=read_state(tmp_path, "M1"),
    )
    write_state(tmp_path, failed)
    stored = read_state(tmp_path, "M1")
    assert stored is not None
    assert ("PARTIAL", 3, 110.0, 1) == (
        stored["outcome"],
        stored["exit_code"],
        stored["last_success_ts"],
        stored["consecutive_failures"],
    )
    assert [True, False] == [m["reachable"] for m in stored["members"]]
    assert stat.S_IMODE((tmp_path / "runs" / "M1.json").stat().st_mode) == 0o600


def test_status_staleness_with_the_clock_moved(tmp_path: Path) -> None:
    """status: 0 within the bound, 4 once the last success is older (clock moved, no sleep)."""
    path = config_file(tmp_path, monitoring={"stale_after": "1h"})
    config = load_config(path)
    assert ExitStatus.STALE == service_status.exit_status(
        service_status.collect(config, config.mirrors)
    )
    with time_machine.travel(1_800_000_000, tick=False) as traveller:
        now = time.time()
        state = build_state(
            report(MemberStatus.SYNCED), RunTimes(now - 5, now, 5.0), mode="daemon", previous=None
        )
        write_state(config.state_dir, state)
        statuses = service_status.collect(config, config.mirrors)
        assert ExitStatus.OK == service_status.exit_status(statuses)
        assert "(0s ago); bound 3600s: ok" in service_status.render_text(config, statuses)
        traveller.shift(3601)
        statuses = service_status.collect(config, config.mirrors)
        assert ExitStatus.STALE == service_status.exit_status(statuses)
        document = json.loads(service_status.render_json(statuses))
        assert ("STALE", 4, True, 3601.0) == (
            document["outcome"],
            document["exit_code"],
            document["mirrors"][0]["stale"],
            document["mirrors"][0]["last_success_age_seconds"],
        )
    (config.state_dir / "runs" / "M1.json").write_text("{broken")
    assert ExitStatus.ERROR == service_status.exit_status(
        service_status.collect(config, config.mirrors)
    )


# ---------------------------------------------------------------- metrics
def test_metrics_textfile(tmp_path: Path) -> None:
    """The textfile holds the documented series, is world-readable and written atomically."""
    state = build_state(
        report(MemberStatus.UNREACHABLE), RunTimes(100.0, 112.5, 12.5), mode="daemon", previous=None
    )
    counters = DaemonCounters()
    counters.add_missed("M1", 3)
    counters.run_finished("M1", "PARTIAL")
    collector = MirrorsyncCollector(
        lambda: {"M1": state}, stale_after=lambda: 600.0, counters=counters
    )
    path = tmp_path / "textfile" / "mirrorsync.prom"
    write_textfile(path, make_registry(collector))
    text = path.read_text()
    for line in (
        'mirrorsync_last_run_timestamp_seconds{mirror="M1"} 112.5',
        'mirrorsync_last_run_outcome{mirror="M1",outcome="PARTIAL"} 1.0',
        'mirrorsync_last_run_outcome{mirror="M1",outcome="SYNCED"} 0.0',
        'mirrorsync_last_run_duration_seconds{mirror="M1"} 12.5',
        'mirrorsync_member_reachable{member="b",mirror="M1"} 0.0',
        'mirrorsync_member_reachable{member="a",mirror="M1"} 1.0',
        'mirrorsync_drift_records{member="b",mirror="M1"} 0.0',
        'mirrorsync_missed_runs_total{mirror="M1"} 3.0',
        'mirrorsync_runs_total{mirror="M1",outcome="PARTIAL"} 1.0',
        "mirrorsync_stale_after_seconds 600.0",
    ):
        assert line in text.splitlines(), line
    assert "mirrorsync_last_success_timestamp_seconds{" not in text  # never succeeded
    assert 0o644 == stat.S_IMODE(path.stat().st_mode)
    assert [path.name] == [p.name for p in path.parent.iterdir()]  # no temp file left
    assert render(make_registry(collector)).decode() == text


# ---------------------------------------------------------------- hooks
def test_hooks_get_no_secrets_and_never_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands see a minimal environment; a hook that hangs is killed at its timeout and never
    delays the caller; events keep their order."""
    monkeypatch.setenv("MIRRORSYNC_IRIS_PASSWORD", "pw-Very-Secret")
    out = tmp_path / "hooks.log"
    record = [
        "/bin/sh",
        "-c",
        f'echo "$MIRRORSYNC_EVENT $MIRRORSYNC_OUTCOME $(env | sort | tr "\\n" ,)" >> {out}',
    ]
    failures: list[str] = []
    settings = HookSettings(
        timeout=0.5,
        start=(HookSpec(command=("/bin/sh", "-c", "sleep 30")), HookSpec(command=tuple(record))),
        success=(HookSpec(command=tuple(record)),),
    )
    runner = HookRunner(settings, on_failure=failures.append)
    started = time.monotonic()
    runner.fire("start", "M1")
    runner.fire("success", "M1", outcome="SYNCED", exit_code=0, summary="x")
    assert time.monotonic() - started < 0.2  # fire() only queues
    runner.close(timeout=5)
    lines = out.read_text().splitlines()
    assert ["start", "success"] == [line.split()[0] for line in lines]
    assert "success SYNCED" in lines[1]
    assert "pw-Very-Secret" not in out.read_text()
    assert "MIRRORSYNC_IRIS_PASSWORD" not in out.read_text()
    assert ["start"] == failures  # the sleeping hook timed out


def test_http_hook_pings_with_summary(tmp_path: Path) -> None:
    """A URL hook POSTs the summary; its URL (a token) is logged as scheme and host only."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(("POST", self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/ping/secret-token/fail"
    runner = HookRunner(HookSettings(timeout=5, failure=(HookSpec(url=url),)))
    runner.fire("failure", "M1", outcome="ERROR", exit_code=1, summary="mirror M1: ERROR")
    runner.close(timeout=5)
    thread.join(5)
    server.server_close()
    assert [("POST", "/ping/secret-token/fail", b"mirror M1: ERROR")] == received
    assert "secret-token" not in redact_url(url)
    assert ("success", "drift", "failure", "failure") == tuple(
        event_for(o) for o in ("SYNCED", "DRIFT", "PARTIAL", "ERROR")
    )


# ---------------------------------------------------------------- notify
def test_notify_sends_datagrams_and_is_a_no_op_without_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages reach a real datagram socket (also an abstract one); no NOTIFY_SOCKET: nothing."""
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(2)
    notifier = Notifier(str(path))
    notifier.ready("started")
    notifier.watchdog()
    assert b"READY=1\nSTATUS=started" == listener.recv(4096)
    assert b"WATCHDOG=1" == listener.recv(4096)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0mirrorsync-test-{os.getpid()}")
    abstract.settimeout(2)
    Notifier(f"@mirrorsync-test-{os.getpid()}").stopping()
    assert b"STOPPING=1\nSTATUS=stopping" == abstract.recv(4096)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert False is Notifier().send("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert 1.5 == watchdog_interval()
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert None is watchdog_interval()
    for sock in (listener, abstract):
        sock.close()


# ---------------------------------------------------------------- journald
JOURNAL_SCRIPT = textwrap.dedent(
    """
    import structlog
    from mirrorsync.logs import configure_logging
    configure_logging("debug", "auto")
    log = structlog.get_logger("t")
    log.debug("d"); log.info("i"); log.warning("w"); log.error("e"); log.critical("c")
    """
)


@pytest.mark.parametrize("connected", [True, False])
def test_journald_priority_prefix(tmp_path: Path, connected: bool) -> None:
    """Under systemd (stderr is $JOURNAL_STREAM) each JSON line starts with its syslog
    priority; a stderr redirected elsewhere gets plain lines even with the variable set."""
    err = tmp_path / "stderr"
    with err.open("wb") as handle:
        info = os.fstat(handle.fileno())
        stream = f"{info.st_dev}:{info.st_ino}" if connected else f"{info.st_dev}:1"
        subprocess.run(
            [sys.executable, "-c", JOURNAL_SCRIPT],
            stderr=handle,
            env={**os.environ, "JOURNAL_STREAM": stream},
            check=True,
        )
    lines = err.read_text().splitlines()
    if connected:
        assert ["<7>", "<6>", "<4>", "<3>", "<2>"] == [line[:3] for line in lines]
        assert "e" == json.loads(lines[3][3:])["event"]
    else:
        assert ["d", "i", "w", "e", "c"] == [json.loads(line)["event"] for line in lines]


# ---------------------------------------------------------------- signals
def test_signal_delivered_to_another_thread_is_acted_on_at_once() -> None:
    """The kernel may deliver SIGTERM to any thread; while the main thread sleeps (the daemon
    waits for its next run, maybe an hour away) the callback must still run right away."""
    import signal

    from mirrorsync.service.signals import routed_signals

    got = threading.Event()
    sleeper_ready = threading.Event()
    release = threading.Event()

    def worker() -> None:
        sleeper_ready.set()
        release.wait(10)

    thread = threading.Thread(target=worker)
    with routed_signals({signal.SIGTERM: lambda _s: got.set()}):
        thread.start()
        sleeper_ready.wait(5)
        assert thread.ident is not None
        signal.pthread_kill(thread.ident, signal.SIGTERM)  # not the main thread
        # The main thread blocks in a C-level wait: a Python handler could not run now.
        assert got.wait(5)
        release.set()
        thread.join()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_operator_stops_are_told_from_deadlines() -> None:
    """Runs stopped by a signal (restart, Ctrl-C) fire no failure hook; a deadline does."""
    from mirrorsync.service.run import _operator_stop

    assert _operator_stop("the daemon is stopping (SIGTERM)")
    assert _operator_stop("SIGINT received")
    assert not _operator_stop("run deadline of 1800s passed")

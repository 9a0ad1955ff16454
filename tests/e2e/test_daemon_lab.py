"""End to end: `mirrorsync daemon` (a real subprocess) against the lab, as systemd would run it.

Each test listens on a real AF_UNIX datagram socket passed as $NOTIFY_SOCKET, reads the
daemon's JSON log lines as they come, and checks the members straight in the simulator's
store. Schedules are fast (seconds), so the daemon completes several real runs per test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorsync.lab.lab import LabInfo
from tests.e2e.test_sync_lab import ITEM_GLOBALS, all_nodes, member_home, run_cli

pytestmark = pytest.mark.lab
WAIT = 90.0


class NotifyListener:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes: keep it short, not under tmp_path.
        self.directory = Path(tempfile.mkdtemp(prefix="ms-notify-", dir="/tmp"))
        self.path = self.directory / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())
                self._lock.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], *, after: int = 0) -> str:
        """The first message (from index ``after``) matching ``predicate``."""
        deadline = time.monotonic() + WAIT
        with self._lock:
            while True:
                for message in self.messages[after:]:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such notify message; got {self.messages}")
                self._lock.wait(left)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class DaemonProcess:
    """`mirrorsync daemon` in a subprocess, its JSON log lines collected as they come."""

    def __init__(self, config: Path, notify: NotifyListener, env: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirrorsync",
                "--log-format",
                "json",
                "daemon",
                "-c",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path), **env},
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "non-json", "line": line}
            with self._lock:
                self.events.append(event)
                self._lock.notify_all()

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_event(self, name: str, count: int = 1, **match: Any) -> dict[str, Any]:
        """Wait until ``count`` events called ``name`` (with ``match`` fields) were logged."""
        deadline = time.monotonic() + WAIT
        with self._lock:
            while True:
                found = [
                    e
                    for e in self.events
                    if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
                ]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._thread.is_alive()):
                    raise AssertionError(f"no {count}x {name} {match}; log: {self.events[-20:]}")
                self._lock.wait(min(left, 0.5))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self) -> int:
        try:
            code = self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit; log: {self.events[-15:]}") from None
        self._thread.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    listener = NotifyListener()
    yield listener
    listener.close()


@pytest.fixture
def start_daemon(notify: NotifyListener) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, notify, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def daemon_config(lab: LabInfo, name: str, **sections: Any) -> Path:
    config = yaml.safe_load(lab.config.read_text())
    config.update(sections)
    path = lab.directory / name
    path.write_text(yaml.safe_dump(config))
    return path


def read_state(lab: LabInfo) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((lab.directory / "state/runs/LABMIRROR.json").read_text())
    return state


def test_daemon_runs_reloads_and_stops(
    lab: LabInfo, notify: NotifyListener, start_daemon: Callable[..., DaemonProcess]
) -> None:
    """Several scheduled runs (state, metrics, hooks, READY/STATUS/WATCHDOG), a rejected and an
    accepted SIGHUP, then SIGTERM: STOPPING=1 and exit 0."""
    hooks_log = lab.directory / "hooks.log"
    record = (
        f'echo "$MIRRORSYNC_EVENT $MIRRORSYNC_OUTCOME ${{MS_TEST_SECRET:-none}}" >> {hooks_log}'
    )
    sections = {
        "daemon": {"schedule": {"every": "1s"}, "run_deadline": "2m"},
        "monitoring": {
            "stale_after": "10m",
            "metrics": {"textfile": "metrics/mirrorsync.prom", "port": free_port()},
            "hooks": {
                "timeout": 5,
                "start": [{"command": ["/bin/sh", "-c", record]}],
                "success": [{"command": ["/bin/sh", "-c", record]}],
            },
        },
    }
    path = daemon_config(lab, "daemon.yaml", **sections)
    good_text = path.read_text()
    daemon = start_daemon(path, WATCHDOG_USEC="400000", MS_TEST_SECRET="pw-Very-Secret")

    ready = notify.wait_for(lambda m: m.startswith("READY=1"))
    assert "STATUS=started: LABMIRROR: no run yet" in ready
    scheduled = daemon.wait_event("job.scheduled")
    assert ("every 1s", 1, True, 300.0) == (
        scheduled["schedule"],
        scheduled["max_instances"],
        scheduled["coalesce"],
        scheduled["misfire_grace_time"],
    )
    first = daemon.wait_event("run.finished", 1)
    daemon.wait_event("run.finished", 3)
    assert "SYNCED" == first["outcome"]
    state = read_state(lab)
    assert ("IN_SYNC", "daemon", 0) == (state["outcome"], state["mode"], state["exit_code"])
    assert {"in_sync"} == {m["status"] for m in state["members"]}
    primary = all_nodes(member_home(lab, "iris-a"), ITEM_GLOBALS)
    for name in ("iris-b", "iris-c"):
        assert primary == all_nodes(member_home(lab, name), ITEM_GLOBALS)
    notify.wait_for(lambda m: m == "WATCHDOG=1")
    notify.wait_for(lambda m: m.startswith("STATUS=LABMIRROR: IN_SYNC at "))
    metrics = (lab.directory / "metrics/mirrorsync.prom").read_text()
    assert 'mirrorsync_last_run_outcome{mirror="LABMIRROR",outcome="IN_SYNC"} 1.0' in metrics
    assert 'mirrorsync_member_reachable{member="iris-c",mirror="LABMIRROR"} 1.0' in metrics
    assert 'mirrorsync_runs_total{mirror="LABMIRROR",outcome="SYNCED"} 1.0' in metrics
    port = sections["monitoring"]["metrics"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        served = response.read().decode()
    assert 'mirrorsync_run_in_progress{mirror="LABMIRROR"}' in served
    assert "mirrorsync_last_run_outcome{" in served
    # Runs take longer than the 1s interval: the skipped run times are counted, not lost.
    assert daemon.named("run.missed")
    assert 'mirrorsync_missed_runs_total{mirror="LABMIRROR"} 0.0' not in metrics

    # A bad config on SIGHUP: reported (error level), the old config keeps running.
    path.write_text("mirrors: [")
    seen = len(notify.messages)
    daemon.signal(signal.SIGHUP)
    notify.wait_for(lambda m: m.startswith("RELOADING=1"), after=seen)
    rejected = notify.wait_for(lambda m: m.startswith("READY=1"), after=seen)
    assert "STATUS=reload rejected, previous configuration kept" in rejected
    assert "error" == daemon.wait_event("reload.rejected")["level"]
    runs_before = len(daemon.named("run.finished"))
    daemon.wait_event("run.finished", runs_before + 1)  # still running on the old config

    # A good one: applied (new schedule logged).
    path.write_text(good_text.replace("every: 1s", "every: 2s"))
    seen = len(notify.messages)
    daemon.signal(signal.SIGHUP)
    assert "STATUS=reloaded" in notify.wait_for(lambda m: m.startswith("READY=1"), after=seen)
    daemon.wait_event("job.scheduled", schedule="every 2s")

    seen = len(notify.messages)
    daemon.signal(signal.SIGTERM)
    assert 0 == daemon.wait()
    notify.wait_for(lambda m: m.startswith("STOPPING=1"), after=seen)
    daemon.wait_event("daemon.stopped")

    hooks = hooks_log.read_text().splitlines()
    assert "start  none" == hooks[0]  # the hook did not inherit the daemon's environment
    assert {"success SYNCED none", "success IN_SYNC none"} <= set(hooks)
    status = run_cli("status", "-c", str(path))
    assert 0 == status.returncode, status.stdout + status.stderr
    assert "OK" == status.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("signal_at", ["member.probe", "member.snapshot_saved"])
def test_sigterm_mid_run_leaves_members_whole(
    lab: LabInfo,
    notify: NotifyListener,
    start_daemon: Callable[..., DaemonProcess],
    signal_at: str,
) -> None:
    """SIGTERM early in a sync (probe) or right at an import: the daemon exits 0 after a safe
    step boundary, and every member holds exactly its old item set or exactly the primary's."""
    before = {m.name: all_nodes(member_home(lab, m.name), ITEM_GLOBALS) for m in lab.members}
    path = daemon_config(lab, "daemon.yaml", daemon={"schedule": {"every": "1h"}})
    daemon = start_daemon(path)
    daemon.wait_event(signal_at)
    daemon.signal(signal.SIGTERM)
    assert 0 == daemon.wait()
    notify.wait_for(lambda m: m.startswith("STOPPING=1"))
    daemon.wait_event("run.finished")
    primary = all_nodes(member_home(lab, "iris-a"), ITEM_GLOBALS)
    assert before["iris-a"] == primary
    whole = {}
    for name in ("iris-b", "iris-c"):
        now = all_nodes(member_home(lab, name), ITEM_GLOBALS)
        assert now in (before[name], primary), f"{name} is neither old nor new"
        whole[name] = "new" if now == primary else "old"
    state = read_state(lab)
    if signal_at == "member.probe":
        assert {"iris-b": "old", "iris-c": "old"} == whole
        assert state["abandoned"]
        assert "the daemon is stopping (SIGTERM)" in state["error"]


def test_lock_contention_between_processes(lab: LabInfo) -> None:
    """While one `sync` runs, a second command exits 75 naming the holder, and one with
    --lock-wait waits for it and then runs."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "mirrorsync", "--log-format", "json", "sync", "-c", str(lab.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stderr is not None
        for line in holder.stderr:
            if '"run.started"' in line:
                break
        busy = run_cli("drift", "-c", str(lab.config))
        assert 75 == busy.returncode, busy.stdout + busy.stderr
        assert "LOCKED" == busy.stdout.strip().splitlines()[-1]
        assert f"mirror LABMIRROR is locked by another run (pid {holder.pid}" in busy.stderr
        assert "sync -c" in busy.stderr
        waited = run_cli("drift", "-c", str(lab.config), "--lock-wait", "120")
        assert 0 == holder.wait(timeout=WAIT)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert 0 == waited.returncode, waited.stdout + waited.stderr
    assert "IN_SYNC" == waited.stdout.strip().splitlines()[-1]
    state = read_state(lab)
    assert ("drift", "IN_SYNC") == (state["mode"], state["outcome"])


def test_run_past_its_deadline_does_not_stop_later_runs(
    lab: LabInfo, notify: NotifyListener, start_daemon: Callable[..., DaemonProcess]
) -> None:
    """A member whose IRIS hangs makes each run overrun its deadline: the run is abandoned at
    the next safe boundary and reported, and the next scheduled runs still happen."""
    slow = lab.directory / "slow-iris"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    config = yaml.safe_load(lab.config.read_text())
    config["ssh"]["command_timeout"] = 3  # the healthy members answer well within it
    config["retry"] = {"attempts": 1}
    config["mirrors"][0]["members"][2]["iris_command"] = str(slow)
    config["daemon"] = {"schedule": {"every": "1s"}, "run_deadline": "500ms"}
    path = lab.directory / "slow.yaml"
    path.write_text(yaml.safe_dump(config))
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    daemon = start_daemon(path, WATCHDOG_USEC="2000000")
    first = daemon.wait_event("run.finished", 1)
    assert (True, "ERROR") == (first["abandoned"], first["outcome"])
    abandoned = daemon.wait_event("mirror.abandoned")
    assert "run deadline of 0.5s passed (stopped before the export)" == abandoned["reason"]
    daemon.wait_event("run.finished", 2)  # the next scheduled run still happens
    state = read_state(lab)
    assert state["consecutive_failures"] >= 2
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    notify.wait_for(lambda m: m == "WATCHDOG=1")  # overrunning a deadline is not wedged
    daemon.signal(signal.SIGTERM)
    assert 0 == daemon.wait()
    status = run_cli("status", "-c", str(path), "--format", "json")
    assert 4 == status.returncode  # never succeeded: stale
    assert json.loads(status.stdout)["mirrors"][0]["stale"]

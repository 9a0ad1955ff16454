"""Prometheus metrics (prometheus-client): a textfile written atomically, and optional HTTP.

Per-mirror gauges come from the state files (the last run of each mirror), so a one-shot
`sync` from a timer and the daemon expose the same series. The daemon adds its own counters
(runs, missed runs, lock contention, hook failures) which live in its process: a one-shot run
rewriting the textfile leaves them out until the daemon's next write (rate() treats that as a
counter reset; run either the daemon or the timer, not both, for clean counters).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mirrorsync.core.report import Outcome

OUTCOMES = [o.value for o in Outcome]
StateSource = Callable[[], Mapping[str, dict[str, Any] | None]]


class DaemonCounters:
    """Counters of a running daemon (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self.started = clock()
        self.runs: Counter[tuple[str, str]] = Counter()
        self.missed: Counter[str] = Counter()
        self.lock_busy: Counter[str] = Counter()
        self.hook_failures: Counter[str] = Counter()
        self.in_progress: set[str] = set()

    def run_finished(self, mirror: str, outcome: str) -> None:
        with self._lock:
            self.runs[(mirror, outcome)] += 1

    def add_missed(self, mirror: str, count: int = 1) -> None:
        with self._lock:
            self.missed[mirror] += count

    def add_lock_busy(self, mirror: str) -> None:
        with self._lock:
            self.lock_busy[mirror] += 1

    def add_hook_failure(self, event: str) -> None:
        with self._lock:
            self.hook_failures[event] += 1

    def set_running(self, mirror: str, running: bool) -> None:
        with self._lock:
            (self.in_progress.add if running else self.in_progress.discard)(mirror)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy for rendering."""
        with self._lock:
            return {
                "runs": dict(self.runs),
                "missed": dict(self.missed),
                "lock_busy": dict(self.lock_busy),
                "hook_failures": dict(self.hook_failures),
                "in_progress": set(self.in_progress),
            }


class MirrorsyncCollector(Collector):
    """Renders the metrics from the current states (and the daemon's counters, if any)."""

    def __init__(
        self,
        states: StateSource,
        *,
        stale_after: Callable[[], float],
        counters: DaemonCounters | None = None,
    ) -> None:
        self.states = states
        self.stale_after = stale_after
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        states = self.states()
        yield from self._state_metrics(states)
        stale = GaugeMetricFamily(
            "mirrorsync_stale_after_seconds",
            "Configured bound: a mirror whose last success is older is stale (status exits 4).",
        )
        stale.add_metric([], self.stale_after())
        yield stale
        if self.counters is not None:
            yield from self._daemon_metrics(list(states), self.counters.snapshot())

    def _state_metrics(self, states: Mapping[str, dict[str, Any] | None]) -> Iterator[Metric]:
        last_run = GaugeMetricFamily(
            "mirrorsync_last_run_timestamp_seconds",
            "When the last run of the mirror finished (any outcome).",
            labels=["mirror"],
        )
        outcome = GaugeMetricFamily(
            "mirrorsync_last_run_outcome",
            "Outcome of the last run: 1 for the outcome it had, 0 for the others.",
            labels=["mirror", "outcome"],
        )
        exit_code = GaugeMetricFamily(
            "mirrorsync_last_run_exit_code",
            "Exit code the last run maps to (0 ok, 1 error, 2 drift, 3 partial).",
            labels=["mirror"],
        )
        duration = GaugeMetricFamily(
            "mirrorsync_last_run_duration_seconds",
            "How long the last run took.",
            labels=["mirror"],
        )
        success = GaugeMetricFamily(
            "mirrorsync_last_success_timestamp_seconds",
            "When the last successful run (IN_SYNC or SYNCED) finished.",
            labels=["mirror"],
        )
        failures = GaugeMetricFamily(
            "mirrorsync_consecutive_failures",
            "Runs since the last success.",
            labels=["mirror"],
        )
        drift = GaugeMetricFamily(
            "mirrorsync_drift_records",
            "Records that differed from the primary when the last run compared the member.",
            labels=["mirror", "member"],
        )
        reachable = GaugeMetricFamily(
            "mirrorsync_member_reachable",
            "1 if the member answered the last run's probe (SSH and IRIS), else 0.",
            labels=["mirror", "member"],
        )
        for mirror, state in sorted(states.items()):
            if state is None:
                continue
            last_run.add_metric([mirror], float(state["finished_ts"]))
            for value in OUTCOMES:
                outcome.add_metric([mirror, value], 1.0 if state["outcome"] == value else 0.0)
            exit_code.add_metric([mirror], float(state["exit_code"]))
            duration.add_metric([mirror], float(state["duration_seconds"]))
            if state.get("last_success_ts") is not None:
                success.add_metric([mirror], float(state["last_success_ts"]))
            failures.add_metric([mirror], float(state.get("consecutive_failures", 0)))
            for member in state["members"]:
                drift.add_metric([mirror, member["name"]], float(member["differences"]))
                reachable.add_metric([mirror, member["name"]], 1.0 if member["reachable"] else 0.0)
        yield from (last_run, outcome, exit_code, duration, success, failures, drift, reachable)

    def _daemon_metrics(self, mirrors: list[str], counts: dict[str, Any]) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "mirrorsync_runs",
            "Runs finished by this daemon, by outcome.",
            labels=["mirror", "outcome"],
        )
        for (mirror, outcome), count in sorted(counts["runs"].items()):
            runs.add_metric([mirror, outcome], float(count))
        missed = CounterMetricFamily(
            "mirrorsync_missed_runs",
            "Scheduled runs that did not happen (misfired, coalesced, previous run still busy).",
            labels=["mirror"],
        )
        busy = CounterMetricFamily(
            "mirrorsync_lock_busy",
            "Scheduled runs skipped because another run (e.g. a manual sync) held the lock.",
            labels=["mirror"],
        )
        running = GaugeMetricFamily(
            "mirrorsync_run_in_progress",
            "1 while a run of the mirror is going on.",
            labels=["mirror"],
        )
        for mirror in sorted(mirrors):
            missed.add_metric([mirror], float(counts["missed"].get(mirror, 0)))
            busy.add_metric([mirror], float(counts["lock_busy"].get(mirror, 0)))
            running.add_metric([mirror], 1.0 if mirror in counts["in_progress"] else 0.0)
        hooks = CounterMetricFamily(
            "mirrorsync_hook_failures",
            "Hooks that failed or timed out, by event.",
            labels=["event"],
        )
        for event, count in sorted(counts["hook_failures"].items()):
            hooks.add_metric([event], float(count))
        started = GaugeMetricFamily(
            "mirrorsync_daemon_start_time_seconds", "When this daemon process started."
        )
        started.add_metric([], self.counters.started if self.counters else 0.0)
        yield from (runs, missed, busy, running, hooks, started)


def make_registry(collector: MirrorsyncCollector) -> CollectorRegistry:
    """A registry holding only mirrorsync's metrics (no process/platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Write the metrics to ``path`` atomically (temp file, fsync, rename), mode 0644.

    node_exporter reads it as another user, and must never see a half-written file.
    """
    data = render(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class MetricsServer:
    """``/metrics`` over HTTP on a loopback address (prometheus-client's server)."""

    def __init__(self, registry: CollectorRegistry, address: str, port: int) -> None:
        from prometheus_client import start_http_server

        self.address, self.port = address, port
        server, thread = start_http_server(port, addr=address, registry=registry)
        self._server = server
        self._thread = thread

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

"""The last run of each mirror, as JSON in ``STATE_DIR/runs/MIRROR.json`` (written atomically).

Written by every mode (sync, drift, daemon) while the mirror's lock is held, read by
`mirrorsync status`, the metrics and the daemon's STATUS= line. It holds no secrets: outcome,
per-member status and difference counts, error texts (which never carry secrets by design).
The time of the last successful run is carried forward from the previous file, so staleness
can be judged from this one file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrorsync.core.backup import write_private_atomically
from mirrorsync.core.report import MirrorReport, Outcome

STATE_FORMAT = 1
SUCCESS_OUTCOMES = frozenset({Outcome.IN_SYNC.value, Outcome.SYNCED.value})
"""Outcomes that count as a success for staleness: every member verified equal to the primary."""


def iso(timestamp: float) -> str:
    """UTC ISO-8601 with seconds, e.g. ``2026-12-03T16:40:01Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def runs_dir(state_dir: Path) -> Path:
    """``STATE_DIR/runs``."""
    return state_dir / "runs"


def state_path(state_dir: Path, mirror: str) -> Path:
    """Where the last run of ``mirror`` is kept."""
    return runs_dir(state_dir) / f"{mirror}.json"


@dataclass(frozen=True)
class RunTimes:
    """Wall-clock start and end of a run (seconds since the epoch) and its monotonic length."""

    started: float
    finished: float
    duration: float


def _member(report: MirrorReport, index: int) -> dict[str, Any]:
    member = report.members[index]
    return {
        "name": member.name,
        "role": member.role,
        "status": member.status.value if member.status else None,
        "reachable": member.role is not None,
        "differences": len(member.differences),
        "error": member.error,
    }


def _error_text(report: MirrorReport) -> str | None:
    if report.refusal:
        return report.refusal
    errors = [f"{m.name}: {m.error}" for m in report.members if m.error]
    if errors:
        return "; ".join(errors)
    return None


def build_state(
    report: MirrorReport,
    times: RunTimes,
    *,
    mode: str,
    previous: dict[str, Any] | None,
    stopped: str | None = None,
) -> dict[str, Any]:
    """The state document of a finished run; ``previous`` is the mirror's last state, if any;
    ``stopped`` why the run was told to stop early (deadline, signal), if it was."""
    outcome = report.outcome.value
    success = outcome in SUCCESS_OUTCOMES
    previous = previous or {}
    if success:
        last_success: float | None = times.finished
        failures = 0
    else:
        last_success = previous.get("last_success_ts")
        failures = int(previous.get("consecutive_failures", 0)) + 1
    return {
        "format": STATE_FORMAT,
        "mirror": report.mirror,
        "action": report.action,
        "mode": mode,
        "pid": os.getpid(),
        "started_at": iso(times.started),
        "started_ts": times.started,
        "finished_at": iso(times.finished),
        "finished_ts": times.finished,
        "duration_seconds": round(times.duration, 3),
        "outcome": outcome,
        "exit_code": int(report.exit_status),
        "success": success,
        "primary": report.primary,
        "abandoned": stopped is not None,
        "stop_reason": stopped,
        "error": _error_text(report),
        "warnings": list(report.warnings),
        "members": [_member(report, i) for i in range(len(report.members))],
        "last_success_at": iso(last_success) if last_success is not None else None,
        "last_success_ts": last_success,
        "consecutive_failures": failures,
    }


def read_state(state_dir: Path, mirror: str) -> dict[str, Any] | None:
    """The last state of ``mirror``; None if no run was recorded. ValueError if unreadable."""
    path = state_path(state_dir, mirror)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the state file: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{path}: the state file is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a mirrorsync state file of format {STATE_FORMAT}")
    return data


def write_state(state_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (0600 in a 0700 directory); returns the file."""
    directory = runs_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_path(state_dir, str(state["mirror"]))
    write_private_atomically(path, json.dumps(state, indent=2, ensure_ascii=False).encode())
    return path


def previous_state(state_dir: Path, mirror: str) -> dict[str, Any] | None:
    """Like `read_state`, but an unreadable file counts as no previous run (it is replaced)."""
    try:
        return read_state(state_dir, mirror)
    except ValueError:
        return None

"""`mirrorsync status`: the last run of each mirror and whether its last success is too old.

Exit codes (README "Exit codes"): 0 every selected mirror had a successful run (IN_SYNC or
SYNCED) within ``monitoring.stale_after``; 4 (STALE) at least one did not, or never had one;
1 a state file could not be read. The last run's own outcome does not change the exit code by
itself: one failed run inside the bound is not yet an alert (the failure hook and the
``mirrorsync_last_run_outcome`` metric are there for that).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mirrorsync.config.model import Config, MirrorConfig
from mirrorsync.exitcodes import ExitStatus
from mirrorsync.service.lock import describe_holder, read_holder
from mirrorsync.service.state import read_state


@dataclass
class MirrorStatus:
    """What `status` knows about one mirror."""

    mirror: str
    state: dict[str, Any] | None
    error: str | None
    age: float | None
    success_age: float | None
    stale_after: float

    @property
    def stale(self) -> bool:
        """No success recorded, or the last one is older than the bound."""
        return self.success_age is None or self.success_age > self.stale_after

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "mirror": self.mirror,
            "stale": self.stale,
            "stale_after_seconds": self.stale_after,
            "last_run_age_seconds": _round(self.age),
            "last_success_age_seconds": _round(self.success_age),
            "error": self.error,
            "last_run": self.state,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def collect(
    config: Config, mirrors: Sequence[MirrorConfig], now: float | None = None
) -> list[MirrorStatus]:
    """The status of each of ``mirrors`` at ``now`` (default: the current time)."""
    now = time.time() if now is None else now
    found = []
    for mirror in mirrors:
        try:
            state = read_state(config.state_dir, mirror.name)
            error = None
        except ValueError as exc:
            state, error = None, str(exc)
        age = success_age = None
        if state is not None:
            age = max(0.0, now - float(state["finished_ts"]))
            if state.get("last_success_ts") is not None:
                success_age = max(0.0, now - float(state["last_success_ts"]))
        found.append(
            MirrorStatus(mirror.name, state, error, age, success_age, config.monitoring.stale_after)
        )
    return found


def exit_status(statuses: Sequence[MirrorStatus]) -> ExitStatus:
    """1 if a state file is unreadable, else 4 if any mirror is stale, else 0."""
    if any(s.error for s in statuses):
        return ExitStatus.ERROR
    if any(s.stale for s in statuses):
        return ExitStatus.STALE
    return ExitStatus.OK


def ago(seconds: float | None) -> str:
    """``42s ago``, ``5m 3s ago``, ``2h 10m ago``, ``3d 4h ago``; ``never``."""
    if seconds is None:
        return "never"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h ago"
    if hours:
        return f"{hours}h {minutes}m ago"
    if minutes:
        return f"{minutes}m {secs}s ago"
    return f"{secs}s ago"


def render_text(config: Config, statuses: Sequence[MirrorStatus]) -> str:
    """Human-readable status; the last line is OK, STALE or ERROR."""
    lines = []
    for status in statuses:
        state = status.state
        verdict = "STALE" if status.stale else "ok"
        if status.error:
            lines.append(f"mirror {status.mirror}: ERROR {status.error}")
            continue
        if state is None:
            lines.append(
                f"mirror {status.mirror}: no run recorded; STALE (bound {status.stale_after:g}s)"
            )
        else:
            lines.append(
                f"mirror {status.mirror}: last run {state['action']} ({state['mode']}) "
                f"{state['outcome']} exit {state['exit_code']}, finished {state['finished_at']} "
                f"({ago(status.age)}, took {state['duration_seconds']:g}s)"
            )
            lines.append(
                f"  last success: {state['last_success_at'] or 'never'} "
                f"({ago(status.success_age)}); bound {status.stale_after:g}s: {verdict}"
            )
            if state["consecutive_failures"]:
                lines.append(f"  failed runs since: {state['consecutive_failures']}")
            for member in state["members"]:
                count = f", {member['differences']} record(s)" if member["differences"] else ""
                role = member["role"] or "?"
                status_word = member["status"] or "not handled"
                lines.append(f"  {member['name']} ({role}): {status_word}{count}")
            if state["error"]:
                lines.append(f"  error: {state['error']}")
        holder = read_holder(config.state_dir, status.mirror)
        if holder and _pid_alive(holder.get("pid")):
            lines.append(f"  lock last taken by: {describe_holder(holder)}")
    word = {ExitStatus.OK: "OK", ExitStatus.STALE: "STALE"}.get(exit_status(statuses), "ERROR")
    lines.append(word)
    return "\n".join(lines)


def render_json(statuses: Sequence[MirrorStatus]) -> str:
    """One JSON document: ``{"outcome", "exit_code", "mirrors": [...]}``."""
    code = exit_status(statuses)
    word = {ExitStatus.OK: "OK", ExitStatus.STALE: "STALE"}.get(code, "ERROR")
    document = {
        "outcome": word,
        "exit_code": int(code),
        "mirrors": [s.as_dict() for s in statuses],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _pid_alive(pid: object) -> bool:
    import os

    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

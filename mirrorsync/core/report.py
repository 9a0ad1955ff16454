"""The outcome of a run: per-member status, the exit code it implies, text and JSON output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mirrorsync.core.diff import Difference
from mirrorsync.core.explain import MemberExplanation
from mirrorsync.exitcodes import ExitStatus


class MemberStatus(StrEnum):
    """Per-member status in reports (a contract: README "Output")."""

    IN_SYNC = "in_sync"
    DRIFT = "drift"
    SYNCED = "synced"
    UNREACHABLE = "unreachable"
    ERROR = "error"


class Outcome(StrEnum):
    """The last line of text output; also ``outcome`` in JSON."""

    IN_SYNC = "IN_SYNC"
    DRIFT = "DRIFT"
    SYNCED = "SYNCED"
    PARTIAL = "PARTIAL"
    ERROR = "ERROR"


@dataclass
class MemberReport:
    """What happened to one member."""

    name: str
    role: str | None = None
    version: str | None = None
    status: MemberStatus | None = None
    differences: list[Difference] = field(default_factory=list)
    error: str | None = None
    held: str | None = None
    """Why a sync leaves this drifted member alone (deletion guard), if it does."""
    snapshot: str | None = None
    """Id of the snapshot taken of this member before its import."""
    explanation: MemberExplanation | None = None
    """Field-level details of the differences and index coherence findings (issue 5)."""

    def as_dict(self) -> dict[str, object]:
        """JSON form (docs/report.schema.json); field-level keys extend each difference."""
        explained = self.explanation
        return {
            "name": self.name,
            "role": self.role,
            "version": self.version,
            "status": self.status.value if self.status else None,
            "error": self.error,
            "held": self.held,
            "snapshot": self.snapshot,
            "differences": [{**d.as_dict(), **_details(explained, d)} for d in self.differences],
            "findings": [f.as_json() for f in explained.findings] if explained else [],
            "baseline": explained.baseline if explained else False,
        }


def _details(explanation: MemberExplanation | None, difference: Difference) -> dict[str, object]:
    """The field-level keys of one difference (none when it was not explained)."""
    record = explanation.record(difference.global_name, difference.key) if explanation else None
    return record.as_json() if record is not None else {}


@dataclass
class MirrorReport:
    """What happened to one mirror."""

    mirror: str
    action: str
    members: list[MemberReport]
    primary: str | None = None
    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)

    def member(self, name: str) -> MemberReport:
        """The report of member ``name``."""
        return next(m for m in self.members if m.name == name)

    @property
    def outcome(self) -> Outcome:
        """Error beats partial beats drift; SYNCED if a sync changed anything."""
        statuses = {m.status for m in self.members}
        if self.refusal is not None or MemberStatus.ERROR in statuses or None in statuses:
            return Outcome.ERROR
        if MemberStatus.UNREACHABLE in statuses:
            return Outcome.PARTIAL
        if MemberStatus.DRIFT in statuses:
            return Outcome.DRIFT
        if MemberStatus.SYNCED in statuses:
            return Outcome.SYNCED
        return Outcome.IN_SYNC

    @property
    def exit_status(self) -> ExitStatus:
        """The exit code this outcome maps to (README "Exit codes")."""
        return _EXIT[self.outcome]

    def as_dict(self) -> dict[str, object]:
        """JSON form (README "JSON output")."""
        return {
            "mirror": self.mirror,
            "action": self.action,
            "primary": self.primary,
            "outcome": self.outcome.value,
            "exit_code": int(self.exit_status),
            "refusal": self.refusal,
            "warnings": list(self.warnings),
            "members": [m.as_dict() for m in self.members],
        }


_EXIT = {
    Outcome.IN_SYNC: ExitStatus.OK,
    Outcome.SYNCED: ExitStatus.OK,
    Outcome.DRIFT: ExitStatus.DRIFT,
    Outcome.PARTIAL: ExitStatus.PARTIAL,
    Outcome.ERROR: ExitStatus.ERROR,
}


def combined_outcome(reports: Sequence[MirrorReport]) -> Outcome:
    """The outcome of several mirrors: the most severe one."""
    order = [Outcome.ERROR, Outcome.PARTIAL, Outcome.DRIFT, Outcome.SYNCED, Outcome.IN_SYNC]
    outcomes = {r.outcome for r in reports}
    return next(o for o in order if o in outcomes)


def render_json(reports: Sequence[MirrorReport]) -> str:
    """One JSON document: the mirror object itself, or ``{"outcome", "mirrors": [...]}``."""
    if len(reports) == 1:
        # ASCII escapes: no control or bidi character from IRIS data reaches a terminal raw.
        return json.dumps(reports[0].as_dict(), indent=2, ensure_ascii=True)
    outcome = combined_outcome(reports)
    document = {
        "outcome": outcome.value,
        "exit_code": int(_EXIT[outcome]),
        "mirrors": [r.as_dict() for r in reports],
    }
    return json.dumps(document, indent=2, ensure_ascii=True)

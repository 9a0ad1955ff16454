"""Drift reports for people: a text table per member (colours only on a TTY) and Markdown.

Both show, per member and record, what a sync does (``added``: on the primary only;
``removed``: on the member only; ``changed``), the record's label (``client 'Billing Portal'
(ClientId ...)``), the changed fields with the member's and the primary's values, and records
edited on the member outside mirrorsync, loudly. Secrets arrive here already hidden
(:mod:`mirrorsync.core.explain`); every shown string is escaped so that a value can neither
drive the terminal (control characters, bidi overrides) nor inject Markdown/HTML.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from mirrorsync.core.diff import Difference, Kind
from mirrorsync.core.explain import (
    FieldChange,
    Hidden,
    NodeChange,
    Origin,
    RecordExplanation,
    Value,
)
from mirrorsync.core.report import (
    MemberReport,
    MemberStatus,
    MirrorReport,
    combined_outcome,
)

MAX_LISTED = 50
"""Records listed per member in text/Markdown (JSON lists all)."""
MAX_VALUE = 80
"""Characters of a shown value before it is cut (JSON has it whole)."""

_RESET = "\033[0m"
_STYLE = {
    "added": "\033[32m",
    "removed": "\033[31m",
    "changed": "\033[33m",
    "loud": "\033[1;31m",
    "dim": "\033[2m",
    "bold": "\033[1m",
}


def escape(text: str) -> str:
    """``text`` with control and format characters (incl. bidi overrides) as ``\\xNN`` /
    ``\\uNNNN``: safe to print on a terminal."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def format_value(value: Value) -> str:
    """One displayed value as text (already escaped)."""
    if isinstance(value, Hidden):
        return f"present {value.fingerprint}" if value.present else "absent"
    if value is None:
        return "(undefined)"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + _cut(escape(value).replace('"', '\\"')) + '"'
    return str(value)


def _node_value(value: Hidden | None) -> str:
    if value is None:
        return "(no node)"
    return f"value {value.fingerprint}" if value.present else f'"" {value.fingerprint}'


def field_lines(record: RecordExplanation, member_name: str) -> list[tuple[str, str, str]]:
    """(field, on member, on primary) rows of a changed record."""
    rows: list[tuple[str, str, str]] = []
    for change in record.fields:
        rows.append(_field_row(change, member_name))
    for node in record.nodes:
        rows.append(_node_row(node))
    return rows


def _field_row(change: FieldChange, member_name: str) -> tuple[str, str, str]:
    name = change.field + (" (secret)" if change.secret else "")
    if isinstance(change.member, list) and isinstance(change.primary, list):
        parts = []
        if change.missing_on_member:
            parts.append("lacks " + ", ".join(format_value(v) for v in change.missing_on_member))
        if change.extra_on_member:
            parts.append("has extra " + ", ".join(format_value(v) for v in change.extra_on_member))
        if parts:
            return name, f"{member_name} " + "; ".join(parts), ""
    member, primary = change.member, change.primary
    if isinstance(member, Hidden) and isinstance(primary, Hidden) and member.present:
        name += ": differs" if primary.present else ""
    return name, format_value(change.member), format_value(change.primary)


def _node_row(node: NodeChange) -> tuple[str, str, str]:
    return f"node ({escape(node.key_text)})", _node_value(node.member), _node_value(node.primary)


def _summary(kind: Kind, member_name: str, synced: bool, held: bool = False) -> str:
    if kind is Kind.ADDED:
        return "on the primary only: " + ("added" if synced else f"a sync adds it to {member_name}")
    if kind is Kind.REMOVED:
        later = "held, not deleted (see 'held')" if held else "a sync deletes it"
        return f"on {member_name} only: " + ("deleted" if synced else later)
    if synced:
        return "replaced"
    return "differs from the primary" + (" (held, see 'held')" if held else "")


def _origin_text(origin: Origin, member_name: str) -> str:
    if origin is Origin.MEMBER_MODIFIED:
        return f"MEMBER-MODIFIED: edited on {member_name} outside mirrorsync"
    if origin is Origin.PENDING:
        return "pending: changed on the primary since the last sync"
    return ""


class _Text:
    def __init__(self, color: bool) -> None:
        self.color = color
        self.out: list[str] = []

    def style(self, text: str, style: str) -> str:
        return f"{_STYLE[style]}{text}{_RESET}" if self.color else text

    def mirror(self, report: MirrorReport) -> None:
        self.out.append(
            self.style(f"mirror {report.mirror}: {report.action}", "bold")
            + f", primary {report.primary or '-'}"
        )
        if report.refusal:
            self.out.append("  " + self.style(f"REFUSED: {escape(report.refusal)}", "loud"))
        for warning in report.warnings:
            self.out.append(f"  warning: {escape(warning)}")
        for member in report.members:
            self.member(report, member)

    def member(self, report: MirrorReport, member: MemberReport) -> None:
        role = member.role or "?"
        version = f", IRIS {member.version}" if member.version else ""
        status = member.status.value if member.status else "not handled"
        line = f"  {member.name} ({role}{version}): {status}"
        synced = member.status == MemberStatus.SYNCED
        if member.differences:
            verb = "brought in line" if synced else "differ"
            line += f", {len(member.differences)} record(s) {verb}"
        explanation = member.explanation
        modified = explanation.member_modified if explanation else 0
        if modified:
            line += ", " + self.style(
                f"{modified} edited on {member.name} outside mirrorsync", "loud"
            )
        self.out.append(line)
        if member.error:
            self.out.append(f"    {escape(member.error)}")
        if member.held:
            self.out.append(f"    held: {escape(member.held)}")
        if member.snapshot:
            self.out.append(f"    snapshot before import: {escape(member.snapshot)}")
        if member.differences:
            self.table(report, member, synced)
        if explanation and explanation.findings:
            self.out.append("    index/data coherence on " + member.name + ":")
            for finding in explanation.findings:
                self.out.append(
                    "      "
                    + self.style(finding.kind.value, "loud")
                    + f"  {escape(finding.message)}"
                )

    def table(self, report: MirrorReport, member: MemberReport, synced: bool) -> None:
        listed = ordered(member)[:MAX_LISTED]
        records = [_record(member, d) for d in listed]
        labels = [
            escape(r.label) if r else _raw_label(d) for d, r in zip(listed, records, strict=True)
        ]
        width = min(max(len(label) for label in labels), 72)
        self.out.append(f"    {'change':<8} {'record':<{width}}  what")
        for difference, record, label in zip(listed, records, labels, strict=True):
            kind = difference.kind
            what = _summary(kind, member.name, synced, bool(member.held))
            if record is not None and record.origin is not Origin.UNKNOWN:
                origin = _origin_text(record.origin, member.name)
                loud = record.origin is Origin.MEMBER_MODIFIED
                what += "; " + (self.style(origin, "loud") if loud else origin)
            self.out.append(
                "    " + self.style(f"{kind.value:<8}", kind.value) + f" {label:<{width}}  {what}"
            )
            if record is None:
                continue
            if record.note:
                self.out.append("      " + self.style(escape(record.note), "dim"))
            rows = field_lines(record, member.name)
            if rows:
                self._fields(rows, member.name, report.primary or "primary")
        if len(member.differences) > MAX_LISTED:
            hidden = len(member.differences) - MAX_LISTED
            self.out.append(f"    ... and {hidden} more (use --format json for all)")

    def _fields(self, rows: list[tuple[str, str, str]], member: str, primary: str) -> None:
        heads = ("field", f"on {member}", f"on primary {primary}")
        first = max(len(heads[0]), *(len(r[0]) for r in rows))
        second = max(len(heads[1]), *(len(r[1]) for r in rows))
        for row in (heads, *rows):
            text = f"{row[0]:<{first}}  {row[1]:<{second}}  {row[2]}".rstrip()
            self.out.append("        " + (self.style(text, "dim") if row is heads else text))


def ordered(member: MemberReport) -> list[Difference]:
    """The member's differences grouped by the record id they concern (a client's data, index
    and metadata records together), data records first within each group."""

    def sort_key(difference: Difference) -> tuple[str, int, str, tuple[str, ...]]:
        record = _record(member, difference)
        record_id = record.record_id if record and record.record_id else "\uffff"
        label = record.label if record is not None else "^"
        rank = 2 if label.startswith(("NameIndex", "node")) else 1 if label.startswith("^") else 0
        return (record_id, rank, difference.global_name, difference.key)

    return sorted(member.differences, key=sort_key)


def _record(member: MemberReport, difference: Difference) -> RecordExplanation | None:
    if member.explanation is None:
        return None
    return member.explanation.record(difference.global_name, difference.key)


def _raw_label(difference: Difference) -> str:
    return escape(f"^{difference.global_name}({difference.key_text})")


def render_text(reports: Sequence[MirrorReport], *, color: bool = False) -> str:
    """The text report; the last line is the outcome word."""
    text = _Text(color)
    for report in reports:
        text.mirror(report)
    text.out.append(combined_outcome(reports).value)
    return "\n".join(text.out)


# ------------------------------------------------------------------ Markdown

_MD_SPECIAL = "\\`*_[]{}()#+!|~"


def md(text: str, *, escaped: bool = False) -> str:
    """Escape ``text`` for Markdown/HTML (tables included): entities for ``& < > "``,
    backslashes before Markdown punctuation, control characters as escapes (unless ``escaped``
    says :func:`escape` already ran)."""
    safe = text if escaped else escape(text)
    safe = safe.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    safe = safe.replace('"', "&quot;")
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in safe)


def render_markdown(reports: Sequence[MirrorReport]) -> str:
    """The report for tickets and chat; the last line names the outcome."""
    out: list[str] = []
    for report in reports:
        out.append(f"## Mirror {md(report.mirror)}: {md(report.action)}")
        out.append("")
        out.append(f"Primary: **{md(report.primary or '-')}**")
        if report.refusal:
            out.append("")
            out.append(f"> **Refused:** {md(report.refusal)}")
        for warning in report.warnings:
            out.append("")
            out.append(f"> Warning: {md(warning)}")
        for member in report.members:
            out.extend(_md_member(report, member))
    out.append("")
    out.append(f"Outcome: **{combined_outcome(reports).value}**")
    return "\n".join(out)


def _md_member(report: MirrorReport, member: MemberReport) -> list[str]:
    role = member.role or "?"
    version = f", IRIS {member.version}" if member.version else ""
    status = member.status.value if member.status else "not handled"
    out = ["", f"### {md(member.name)} ({md(role)}{md(version)}): {status}", ""]
    synced = member.status == MemberStatus.SYNCED
    if member.error:
        out.append(f"Error: {md(member.error)}")
        out.append("")
    if member.held:
        out.append(f"Held: {md(member.held)}")
        out.append("")
    explanation = member.explanation
    if explanation and explanation.member_modified:
        out.append(
            f"**{explanation.member_modified} record(s) edited on {md(member.name)} outside "
            "mirrorsync** (a sync overwrites those edits)."
        )
        out.append("")
    if member.differences:
        out.extend(_md_table(report, member, synced))
    if explanation and explanation.findings:
        out.append("")
        out.append(f"Index/data coherence on {md(member.name)}:")
        out.append("")
        for finding in explanation.findings:
            out.append(f"- **{finding.kind.value}**: {md(finding.message)}")
    return out


def _md_table(report: MirrorReport, member: MemberReport, synced: bool) -> list[str]:
    out: list[str] = []
    if member.differences:
        primary = report.primary or "primary"
        out.append("| change | record | what | details |")
        out.append("| --- | --- | --- | --- |")
        for difference in ordered(member)[:MAX_LISTED]:
            record = _record(member, difference)
            label = (
                md(record.label)
                if record
                else md(f"^{difference.global_name}({difference.key_text})")
            )
            what = md(_summary(difference.kind, member.name, synced, bool(member.held)))
            if record is not None and record.origin is Origin.MEMBER_MODIFIED:
                what += "<br>**" + md(_origin_text(record.origin, member.name)) + "**"
            elif record is not None and record.origin is Origin.PENDING:
                what += "<br>" + md(_origin_text(record.origin, member.name))
            details = []
            if record is not None:
                if record.note:
                    details.append("_" + md(record.note) + "_")
                for name, on_member, on_primary in field_lines(record, member.name):
                    cell = f"**{md(name, escaped=True)}**: {md(on_member, escaped=True)}"
                    if on_primary:
                        cell += f" → {md(on_primary, escaped=True)} (on {md(primary)})"
                    details.append(cell)
            out.append(f"| {difference.kind.value} | {label} | {what} | {'<br>'.join(details)} |")
        if len(member.differences) > MAX_LISTED:
            out.append("")
            out.append(f"... and {len(member.differences) - MAX_LISTED} more (see the JSON report)")
    return out

"""Field-level explanations of drift: what differs in each record, in terms an IRIS admin uses.

Input: read-outs as the engine holds them (``{(global, subscripts): value}``, values are IRIS
strings where ``$LIST`` bytes are chars 0-255). Output, per differing record: a label (the human
name and the id, e.g. ``client 'Billing Portal' (ClientId 8f2c...)``), the changed fields with
the member's and the primary's values (secrets as present/absent + keyed fingerprint), and where
the change came from, judged against the baseline read-out of the last fully successful sync:

* ``member-modified``: the member's copy is not what the last sync left there (edited on the
  member outside mirrorsync: a sync will overwrite that edit);
* ``pending``: the member still holds what the last sync left, the primary changed since;
* ``unknown``: no baseline yet.

It also checks index globals against their data globals (orphan entries, missing entries).
Pure functions, except :func:`explain_member`, which reads the state directory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from mirrorsync.core.diff import Kind, format_subscript, record_key
from mirrorsync.core.fields import (
    INDEXES,
    FieldKind,
    Layout,
    VersionTuple,
    decode_record,
    label_of,
    layout_for,
    nested_items,
)
from mirrorsync.core.secrets import (
    FingerprintKey,
    SecretPolicy,
    looks_like_private_key,
    redact_jwks,
)
from mirrorsync.iris.results import NodeKey, Subscripts
from mirrorsync.listcodec import ListItem

if TYPE_CHECKING:
    from mirrorsync.config.model import Config

log = structlog.get_logger("mirrorsync.explain")

RecordId = tuple[str, Subscripts]
Nodes = dict[Subscripts, str]


class Origin(StrEnum):
    """Where a difference came from, judged against the last successful sync's baseline."""

    MEMBER_MODIFIED = "member-modified"
    PENDING = "pending"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Hidden:
    """A value that is not shown: whether it is there, and its keyed fingerprint."""

    present: bool
    fingerprint: str | None

    def as_json(self) -> dict[str, object]:
        """JSON form."""
        return {"present": self.present, "fingerprint": self.fingerprint}


Shown = str | int | float | None
Value = Shown | list[Shown] | Hidden
"""A displayed value: plain, a list (list fields), or hidden (secrets, opaque values)."""


def value_json(value: Value) -> object:
    """JSON form of a displayed value."""
    return value.as_json() if isinstance(value, Hidden) else value


@dataclass(frozen=True)
class FieldChange:
    """One slot that differs between the member and the primary."""

    field: str
    """The field name, or ``slot N`` past the field map."""
    slot: int
    secret: bool
    member: Value
    primary: Value
    missing_on_member: tuple[Shown, ...] = ()
    """List fields: elements on the primary the member lacks (a sync adds them)."""
    extra_on_member: tuple[Shown, ...] = ()
    """List fields: elements only the member has (a sync removes them)."""

    def as_json(self) -> dict[str, object]:
        """JSON form."""
        document: dict[str, object] = {
            "field": self.field,
            "slot": self.slot,
            "secret": self.secret,
            "member": value_json(self.member),
            "primary": value_json(self.primary),
        }
        if isinstance(self.member, list) or isinstance(self.primary, list):
            document["missing_on_member"] = list(self.missing_on_member)
            document["extra_on_member"] = list(self.extra_on_member)
        return document


@dataclass(frozen=True)
class NodeChange:
    """One node that differs, shown opaquely (no field map applies)."""

    subscripts: Subscripts
    member: Hidden | None
    """None: the node is absent on the member."""
    primary: Hidden | None

    @property
    def key_text(self) -> str:
        """The subscripts as IRIS writes them."""
        return ",".join(format_subscript(s) for s in self.subscripts) or "(root)"

    def as_json(self) -> dict[str, object]:
        """JSON form."""
        return {
            "subscripts": list(self.subscripts),
            "key_text": self.key_text,
            "member": self.member.as_json() if self.member else None,
            "primary": self.primary.as_json() if self.primary else None,
        }


@dataclass(frozen=True)
class RecordExplanation:
    """Everything known about one differing record."""

    global_name: str
    key: Subscripts
    kind: Kind
    label: str
    name: str | None
    """The human name (client Name), when the record has one."""
    record_id: str | None
    """The id (ClientId, ...) the record or index entry refers to."""
    origin: Origin
    layout: str | None
    """The class whose field map decoded the record, or None (node-level)."""
    fields: tuple[FieldChange, ...] = ()
    nodes: tuple[NodeChange, ...] = ()
    note: str | None = None

    def as_json(self) -> dict[str, object]:
        """The keys added to a difference in the JSON report."""
        return {
            "label": self.label,
            "name": self.name,
            "id": self.record_id,
            "origin": self.origin.value,
            "layout": self.layout,
            "fields": [f.as_json() for f in self.fields],
            "node_changes": [n.as_json() for n in self.nodes],
            "note": self.note,
        }


class FindingKind(StrEnum):
    """Index/data coherence problems."""

    ORPHAN_INDEX_ENTRY = "orphan-index-entry"
    MISSING_INDEX_ENTRY = "missing-index-entry"
    INDEX_VALUE_MISMATCH = "index-value-mismatch"


@dataclass(frozen=True)
class Finding:
    """An index/data coherence problem on one member."""

    kind: FindingKind
    global_name: str
    key: Subscripts
    message: str

    @property
    def key_text(self) -> str:
        """The subscripts as IRIS writes them."""
        return ",".join(format_subscript(s) for s in self.key)

    def as_json(self) -> dict[str, object]:
        """JSON form."""
        return {
            "kind": self.kind.value,
            "global": self.global_name,
            "key": list(self.key),
            "key_text": self.key_text,
            "message": self.message,
        }


@dataclass
class MemberExplanation:
    """Field-level details for one member's differences, and its coherence findings."""

    records: dict[RecordId, RecordExplanation] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    baseline: bool = False
    """Whether a baseline was available to tell member edits from pending changes."""

    def record(self, global_name: str, key: Subscripts) -> RecordExplanation | None:
        """The explanation of one record, if it differs."""
        return self.records.get((global_name, key))

    @property
    def member_modified(self) -> int:
        """How many records were edited on the member outside mirrorsync."""
        return sum(1 for r in self.records.values() if r.origin is Origin.MEMBER_MODIFIED)


# ------------------------------------------------------------------ values


def _plain(item: ListItem) -> Shown:
    if isinstance(item, Decimal):
        return int(item) if item == item.to_integral_value() else float(item)
    return item


class _Shower:
    """Turns slot values into displayed values under a secret policy."""

    def __init__(self, key: FingerprintKey) -> None:
        self.key = key

    def hidden(self, item: ListItem) -> Hidden:
        text = "" if item is None else str(_plain(item))
        present = item is not None and text != ""
        return Hidden(present, self.key.fingerprint(text) if present else None)

    def shown(self, item: ListItem) -> Shown | Hidden:
        """A mapped, non-secret value; private keys and JWKS private parts are still hidden."""
        if isinstance(item, str):
            if looks_like_private_key(item):
                return self.hidden(item)
            redacted = redact_jwks(item, self.key)
            if redacted is not None:
                return redacted
        return _plain(item)

    def unmapped(self, item: ListItem) -> Shown | Hidden:
        """A slot past the field map: numbers are shown, text is not (it may be a secret)."""
        if item is None or isinstance(item, int | float | Decimal):
            return _plain(item)
        return self.hidden(item)

    def node(self, value: str | None) -> Hidden | None:
        if value is None:
            return None
        return Hidden(value != "", self.key.fingerprint(value))


# ------------------------------------------------------------------ records


def _group(nodes: Mapping[NodeKey, str], index_globals: frozenset[str]) -> dict[RecordId, Nodes]:
    records: dict[RecordId, Nodes] = defaultdict(dict)
    for (name, subscripts), value in nodes.items():
        records[(name, record_key(name, subscripts, index_globals))][subscripts] = value
    return dict(records)


def _field_changes(
    layout: Layout,
    member_slots: Sequence[ListItem],
    primary_slots: Sequence[ListItem],
    shower: _Shower,
    policy: SecretPolicy,
) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for slot in range(1, max(len(member_slots), len(primary_slots)) + 1):
        old = member_slots[slot - 1] if slot <= len(member_slots) else None
        new = primary_slots[slot - 1] if slot <= len(primary_slots) else None
        if old == new and type(old) is type(new):
            continue
        field_def = layout.field_at(slot)
        name = field_def.name if field_def else f"slot {slot}"
        secret = policy.is_secret(
            layout.data_global, name, builtin=bool(field_def and field_def.secret)
        )
        if secret:
            changes.append(FieldChange(name, slot, True, shower.hidden(old), shower.hidden(new)))
        elif field_def is None:
            changes.append(
                FieldChange(name, slot, False, shower.unmapped(old), shower.unmapped(new))
            )
        elif field_def.kind in (FieldKind.LIST, FieldKind.SERIAL):
            old_items = [_plain(i) for i in nested_items(old)]
            new_items = [_plain(i) for i in nested_items(new)]
            changes.append(
                FieldChange(
                    name,
                    slot,
                    False,
                    _shown_list(old_items, shower),
                    _shown_list(new_items, shower),
                    missing_on_member=tuple(i for i in new_items if i not in old_items),
                    extra_on_member=tuple(i for i in old_items if i not in new_items),
                )
            )
        else:
            changes.append(FieldChange(name, slot, False, shower.shown(old), shower.shown(new)))
    return changes


def _shown_list(items: list[Shown], shower: _Shower) -> Value:
    shown = [shower.shown(i) for i in items]
    if any(isinstance(s, Hidden) for s in shown):
        return shower.hidden(listcodec_text(items))
    return [s for s in shown if not isinstance(s, Hidden)]


def listcodec_text(items: list[Shown]) -> str:
    """A stable text of list elements (only ever fingerprinted)."""
    return json.dumps(items, ensure_ascii=False)


@dataclass
class _Directory:
    """Human names of records, from both sides, by (data global, id)."""

    names: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, records: Mapping[RecordId, Nodes], version: VersionTuple | None) -> None:
        for (name, key), nodes in records.items():
            layout = layout_for(name, version)
            if layout is None or len(key) != 1 or key not in nodes:
                continue
            label = label_of(layout, decode_record(layout, nodes[key]))
            if label is not None:
                self.names.setdefault((name, key[0]), label)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


def _describe(layout: Layout, record_id: str, name: str | None) -> str:
    named = f" {_quote(name)}" if name else ""
    return f"{layout.noun}{named} ({layout.id_name} {record_id})"


def _label(
    global_name: str,
    key: Subscripts,
    directory: _Directory,
    version: VersionTuple | None,
    index_globals: frozenset[str],
) -> tuple[str, str | None, str | None]:
    """(label, human name, id) of a record."""
    for spec in INDEXES:
        if spec.index_global == global_name and len(key) == 3 and key[0] == spec.index_name:
            record_id = key[2]
            name = directory.names.get((spec.layout.data_global, record_id))
            owner = _describe(spec.layout, record_id, name)
            return f"{spec.index_name} entry {_quote(key[1])} of {owner}", name, record_id
    layout = layout_for(global_name, version)
    if layout is not None and len(key) == 1:
        name = directory.names.get((global_name, key[0]))
        return _describe(layout, key[0], name), name, key[0]
    reference = f"^{global_name}({','.join(format_subscript(s) for s in key)})"
    if global_name in index_globals or len(key) != 1:
        return f"node {reference}" if key else f"^{global_name} (root)", None, None
    # A record of another global keyed like a known record (e.g. MetaData by ClientId).
    related = next(
        (
            (data_global, name)
            for (data_global, record_id), name in directory.names.items()
            if record_id == key[0]
        ),
        None,
    )
    if related is not None:
        related_layout = layout_for(related[0], version)
        assert related_layout is not None
        return (
            f"^{global_name} record of {_describe(related_layout, key[0], related[1])}",
            related[1],
            key[0],
        )
    return f"record {reference}", None, key[0]


def _origin(
    member_nodes: Nodes, baseline: Mapping[RecordId, Nodes] | None, record: RecordId
) -> Origin:
    if baseline is None:
        return Origin.UNKNOWN
    return Origin.MEMBER_MODIFIED if member_nodes != baseline.get(record, {}) else Origin.PENDING


def _explain_record(
    record: RecordId,
    primary_nodes: Nodes,
    member_nodes: Nodes,
    *,
    version: VersionTuple | None,
    shower: _Shower,
    policy: SecretPolicy,
) -> tuple[str | None, list[FieldChange], list[NodeChange], str | None]:
    """(layout used, field changes, node changes, note) for a record on both sides."""
    global_name, key = record
    layout = layout_for(global_name, version) if len(key) == 1 else None
    differing = sorted(
        s
        for s in primary_nodes.keys() | member_nodes.keys()
        if primary_nodes.get(s) != member_nodes.get(s)
    )
    note = None
    decoded = False
    fields: list[FieldChange] = []
    if layout is not None and key in primary_nodes and key in member_nodes and key in differing:
        primary_slots = decode_record(layout, primary_nodes[key])
        member_slots = decode_record(layout, member_nodes[key])
        if primary_slots is not None and member_slots is not None:
            fields = _field_changes(layout, member_slots, primary_slots, shower, policy)
            differing.remove(key)
            decoded = True
        else:
            side = "the primary's" if primary_slots is None else "the member's"
            note = (
                f"{side} record does not have the {layout.class_name} layout "
                f"({len(layout.fields)} slots); shown node by node"
            )
            layout = None
    nodes = [
        NodeChange(s, shower.node(member_nodes.get(s)), shower.node(primary_nodes.get(s)))
        for s in differing
    ]
    return (layout.class_name if layout and decoded else None), fields, nodes, note


def _coherence(
    records: Mapping[RecordId, Nodes],
    index_globals: frozenset[str],
    version: VersionTuple | None,
) -> list[Finding]:
    findings: list[Finding] = []
    for spec in INDEXES:
        if spec.index_global not in index_globals:
            continue
        data_global = spec.layout.data_global
        data = {key[0]: nodes.get(key) for (g, key), nodes in records.items() if g == data_global}
        entries = [
            key
            for (g, key) in records
            if g == spec.index_global and len(key) == 3 and key[0] == spec.index_name
        ]
        indexed = {key[2] for key in entries}
        slot = spec.layout.slot_of(spec.field)
        for key in entries:
            record_id = key[2]
            if record_id not in data:
                findings.append(
                    Finding(
                        FindingKind.ORPHAN_INDEX_ENTRY,
                        spec.index_global,
                        key,
                        f"{spec.index_name} entry {_quote(key[1])} points to {spec.layout.noun} "
                        f"{spec.layout.id_name} {record_id}, which has no record in "
                        f"^{data_global}",
                    )
                )
                continue
            value = data[record_id]
            slots = decode_record(spec.layout, value) if value is not None else None
            if slots is None or slot is None:
                continue
            indexed_value = slots[slot - 1]
            expected = f" {indexed_value}" if isinstance(indexed_value, str) else None
            if expected is None or expected.casefold() != key[1].casefold():
                findings.append(
                    Finding(
                        FindingKind.INDEX_VALUE_MISMATCH,
                        spec.index_global,
                        key,
                        f"{spec.index_name} entry {_quote(key[1])} does not match the "
                        f"{spec.field} of {_describe(spec.layout, record_id, None)}: "
                        f"{_quote(str(indexed_value))}",
                    )
                )
        for record_id, value in sorted(data.items()):
            if record_id in indexed or value is None:
                continue
            slots = decode_record(spec.layout, value)
            name = label_of(spec.layout, slots)
            findings.append(
                Finding(
                    FindingKind.MISSING_INDEX_ENTRY,
                    data_global,
                    (record_id,),
                    f"{_describe(spec.layout, record_id, name)} has no {spec.index_name} entry "
                    f"in ^{spec.index_global}",
                )
            )
    return findings


def explain(
    primary: Mapping[NodeKey, str],
    member: Mapping[NodeKey, str],
    *,
    key: FingerprintKey,
    index_globals: frozenset[str] = frozenset(),
    baseline: Mapping[NodeKey, str] | None = None,
    policy: SecretPolicy | None = None,
    version: VersionTuple | None = None,
) -> MemberExplanation:
    """Explain every record that differs between ``primary`` and ``member``."""
    policy = policy or SecretPolicy()
    shower = _Shower(key)
    primary_records = _group(primary, index_globals)
    member_records = _group(member, index_globals)
    baseline_records = _group(baseline, index_globals) if baseline is not None else None
    directory = _Directory()
    directory.add(primary_records, version)
    directory.add(member_records, version)
    result = MemberExplanation(baseline=baseline is not None)
    for record in sorted(primary_records.keys() | member_records.keys()):
        primary_nodes = primary_records.get(record, {})
        member_nodes = member_records.get(record, {})
        if primary_nodes == member_nodes:
            continue
        if not member_nodes:
            kind = Kind.ADDED
        elif not primary_nodes:
            kind = Kind.REMOVED
        else:
            kind = Kind.CHANGED
        label, name, record_id = _label(*record, directory, version, index_globals)
        layout, fields, nodes, note = _explain_record(
            record, primary_nodes, member_nodes, version=version, shower=shower, policy=policy
        )
        result.records[record] = RecordExplanation(
            global_name=record[0],
            key=record[1],
            kind=kind,
            label=label,
            name=name,
            record_id=record_id,
            origin=_origin(member_nodes, baseline_records, record),
            layout=layout,
            fields=tuple(fields),
            nodes=tuple(nodes) if kind is Kind.CHANGED else (),
            note=note,
        )
    result.findings = _coherence(member_records, index_globals, version)
    return result


def parse_version(text: str | None) -> VersionTuple | None:
    """``"2025.1"`` -> ``(2025, 1)``; None if unknown or unparsable."""
    if not text:
        return None
    pieces = []
    for piece in text.split("."):
        if not piece.isdigit():
            return None
        pieces.append(int(piece))
    return tuple(pieces)


def explain_member(
    config: Config,
    mirror: str,
    primary: Mapping[NodeKey, str],
    member: Mapping[NodeKey, str],
    version: str | None,
) -> MemberExplanation | None:
    """:func:`explain` with the installation's key, baseline and secret policy.

    Never raises: an explanation is an extra, it must not fail a run (the failure is logged).
    """
    from mirrorsync.core.backup import load_baseline

    try:
        state_dir = Path(config.state_dir)
        try:
            loaded = load_baseline(state_dir, mirror)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("explain.baseline_unreadable", mirror=mirror, error=str(exc))
            loaded = None
        return explain(
            primary,
            member,
            key=FingerprintKey.load_or_create(state_dir),
            index_globals=frozenset(n for n in config.items.global_names() if n.endswith("I")),
            baseline=loaded[1] if loaded is not None else None,
            policy=SecretPolicy.of(config.report.secret_fields),
            version=parse_version(version),
        )
    except Exception:
        log.exception("explain.failed", mirror=mirror)
        return None

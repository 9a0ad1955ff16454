"""Record-level comparison of two read-outs (pure functions)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from mirrorsync.iris.results import NodeKey, Subscripts


class Kind(StrEnum):
    """What a sync does to the member's copy of a record (the primary is the reference).

    ``added``: on the primary only (the member lacks it); ``removed``: on the member only (a
    sync deletes it); ``changed``: on both with different nodes.
    """

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, order=True)
class Difference:
    """One record that differs between the primary and a member."""

    global_name: str
    key: Subscripts
    kind: Kind
    nodes: int
    """How many nodes of the record differ."""

    @property
    def key_text(self) -> str:
        """The record key as an IRIS reference would show it, e.g. ``"abc",5``."""
        return ",".join(format_subscript(s) for s in self.key) if self.key else "(root)"

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "global": self.global_name,
            "key": list(self.key),
            "key_text": self.key_text,
            "kind": self.kind.value,
            "nodes": self.nodes,
        }


_CANONICAL_NUMBER = re.compile(r"-?(?:[1-9]\d*|0)(?:\.\d*[1-9])?|-?\.\d*[1-9]")


def format_subscript(value: str) -> str:
    """A subscript as IRIS writes it: canonical numbers bare, strings quoted (quotes doubled),
    control characters as ``$c(n)`` pieces joined with ``_``."""
    if _CANONICAL_NUMBER.fullmatch(value) and value != "-0":
        return value
    pieces: list[str] = []
    text = ""
    for char in value:
        if ord(char) < 32 or ord(char) == 127:
            if text:
                pieces.append('"' + text.replace('"', '""') + '"')
                text = ""
            pieces.append(f"$c({ord(char)})")
        else:
            text += char
    if text or not pieces:
        pieces.append('"' + text.replace('"', '""') + '"')
    return "_".join(pieces)


def record_key(
    global_name: str, subscripts: Subscripts, index_globals: frozenset[str]
) -> Subscripts:
    """The record a node belongs to.

    Data and stream globals are keyed by their first subscript (the ID, e.g. the ClientId);
    each index entry (``^...I("NameIndex"," NAME",id)``) is a record of its own.
    """
    if global_name in index_globals:
        return subscripts
    return subscripts[:1]


def compare(
    primary: Mapping[NodeKey, str],
    member: Mapping[NodeKey, str],
    index_globals: frozenset[str] = frozenset(),
) -> list[Difference]:
    """Differences per record, sorted by global then key."""
    only_primary: dict[tuple[str, Subscripts], int] = defaultdict(int)
    only_member: dict[tuple[str, Subscripts], int] = defaultdict(int)
    changed: dict[tuple[str, Subscripts], int] = defaultdict(int)
    for node, value in primary.items():
        record = (node[0], record_key(node[0], node[1], index_globals))
        other = member.get(node)
        if other is None:
            only_primary[record] += 1
        elif other != value:
            changed[record] += 1
    for node in member.keys() - primary.keys():
        record = (node[0], record_key(node[0], node[1], index_globals))
        only_member[record] += 1
    present_on_primary = {(n[0], record_key(n[0], n[1], index_globals)) for n in primary}
    present_on_member = {(n[0], record_key(n[0], n[1], index_globals)) for n in member}
    differences = []
    for record in only_primary.keys() | only_member.keys() | changed.keys():
        count = only_primary[record] + only_member[record] + changed[record]
        if record not in present_on_member:
            kind = Kind.ADDED
        elif record not in present_on_primary:
            kind = Kind.REMOVED
        else:
            kind = Kind.CHANGED
        differences.append(Difference(record[0], record[1], kind, count))
    return sorted(differences, key=lambda d: (d.global_name, d.key, d.kind))

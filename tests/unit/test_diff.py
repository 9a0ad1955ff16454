"""Record-level comparison."""

from __future__ import annotations

from pathlib import Path

from mirrorsync.core.backup import load_readout, save_readout
from mirrorsync.core.diff import Difference, Kind, compare, format_subscript

D = "OAuth2.Server.ClientD"
I = "OAuth2.Server.ClientI"  # noqa: E741


def test_added_removed_changed_per_record() -> None:
    """Records only on the primary are added, only on the member removed, else changed."""
    primary = {
        (D, ("a",)): "1",
        (D, ("b",)): "2",
        (D, ("b", "x")): "3",
        (I, ("NameIndex", " A", "a")): "",
    }
    member = {(D, ("b",)): "2", (D, ("b", "x")): "4", (D, ("c",)): "9"}
    assert [
        Difference(D, ("a",), Kind.ADDED, 1),
        Difference(D, ("b",), Kind.CHANGED, 1),
        Difference(D, ("c",), Kind.REMOVED, 1),
        Difference(I, ("NameIndex", " A", "a"), Kind.ADDED, 1),
    ] == compare(primary, member, frozenset({I}))


def test_identical_readouts_have_no_difference() -> None:
    """Equal read-outs compare equal."""
    nodes = {(D, ("a",)): "\x00\x01", (D, ()): "root"}
    assert [] == compare(nodes, dict(nodes))


def test_partial_record_on_member_is_changed() -> None:
    """A record whose sub-node is missing on the member is changed, not added."""
    primary = {(D, ("a",)): "1", (D, ("a", "s")): "2"}
    assert [Difference(D, ("a",), Kind.CHANGED, 1)] == compare(primary, {(D, ("a",)): "1"})


def test_subscript_display() -> None:
    """Keys print like IRIS references: numbers bare, strings quoted, control chars as $c()."""
    assert ["1", '"01"', '"a""b"', '"a"_$c(1)', '""'] == [
        format_subscript(s) for s in ["1", "01", 'a"b', "a\x01", ""]
    ]


def test_backup_round_trip(tmp_path: Path) -> None:
    """A saved read-out is private (0700/0600) and reads back byte for byte."""
    nodes = {(D, ("a\x01",)): "\x00\xff日本", (D, ()): "", (I, ("NameIndex", " A", "1")): ""}
    path = save_readout(tmp_path / "state", "M", "iris-b", nodes)
    assert nodes == load_readout(path)
    assert 0o600 == path.stat().st_mode & 0o777
    assert 0o700 == path.parent.stat().st_mode & 0o777

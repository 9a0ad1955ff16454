"""Record-level comparison."""

from __future__ import annotations

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

"""Snapshot store: private, atomic, verifiable, pruned."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mirrorsync.core.backup import load_baseline, save_baseline
from mirrorsync.core.snapshots import MEMBER_BACKUP, SnapshotError, SnapshotStore

D = "OAuth2.Server.ClientD"
NODES = {(D, ("a\x01",)): "\x00\xff日本", (D, ()): "", ("OAuth2.Server.ClientI", ("x",)): ""}


def make(store: SnapshotStore, tmp_path: Path, run_id: str, text: str = "<Export/>") -> str:
    export = tmp_path / f"in-{run_id}.xml"
    export.write_text(text)
    snapshot = store.create(
        mirror="M", member="iris-b", kind=MEMBER_BACKUP, run_id=run_id, readout=NODES, export=export
    )
    return snapshot.id


def test_snapshot_round_trip_and_modes(tmp_path: Path) -> None:
    """A snapshot keeps the export and the read-out byte for byte, in 0700/0600 files."""
    store = SnapshotStore(tmp_path / "state")
    snapshot_id = make(store, tmp_path, "r1", "<Export>é</Export>")
    snapshot = store.get("M", "iris-b", snapshot_id)
    assert NODES == snapshot.readout()
    assert snapshot.export_file is not None
    assert "<Export>é</Export>" == snapshot.export_file.read_text()
    assert (D, "OAuth2.Server.ClientI") == snapshot.globals
    assert 0o700 == snapshot.path.stat().st_mode & 0o777
    assert {0o600} == {p.stat().st_mode & 0o777 for p in snapshot.path.iterdir()}
    snapshot.verify()


def test_damaged_export_is_detected(tmp_path: Path) -> None:
    """A changed export.xml fails verification instead of being restored."""
    store = SnapshotStore(tmp_path / "state")
    snapshot = store.get("M", "iris-b", make(store, tmp_path, "r1"))
    assert snapshot.export_file is not None
    snapshot.export_file.write_text("<Export>tampered</Export>")
    with pytest.raises(SnapshotError, match="damaged"):
        snapshot.verify()


def test_unknown_snapshot_names_the_choices(tmp_path: Path) -> None:
    """Asking for a missing snapshot lists the newest ones; path tricks are refused."""
    store = SnapshotStore(tmp_path / "state")
    snapshot_id = make(store, tmp_path, "r1")
    with pytest.raises(SnapshotError, match=snapshot_id):
        store.get("M", "iris-b", "nope")
    with pytest.raises(SnapshotError):
        store.get("M", "iris-b", "../../etc")


def test_prune_keeps_newest_and_drops_partials(tmp_path: Path) -> None:
    """Retention removes old and surplus snapshots, never the newest, and crash leftovers."""
    store = SnapshotStore(tmp_path / "state")
    ids = []
    for index in range(4):
        ids.append(make(store, tmp_path, f"r{index}"))
        time.sleep(0.01)
    oldest = store.get("M", "iris-b", ids[0]).path / "meta.json"
    os.utime(oldest.parent, (0, 0))
    partial = store.root / "M" / "iris-b" / ".x.partial"
    partial.mkdir()
    removed = store.prune("M", "iris-b", keep=2, max_age_days=30)
    assert set(ids[:2]) == set(removed)
    assert [ids[3], ids[2]] == [s.id for s in store.all("M", "iris-b")]
    assert not partial.exists()
    assert [ids[3]] == [s.id for s in store.all("M")][:1]
    assert ids[3] not in store.prune("M", "iris-b", keep=1, max_age_days=1e-9)


def test_baseline_round_trip(tmp_path: Path) -> None:
    """The baseline remembers the primary's name and read-out of the last good sync."""
    assert None is load_baseline(tmp_path, "M")
    save_baseline(tmp_path, "M", "iris-a", NODES)
    assert ("iris-a", NODES) == load_baseline(tmp_path, "M")

"""Snapshots: what a sync replaced (member backups) and what it copied (primary exports).

Layout, all 0700 directories and 0600 files (exports hold client secrets)::

    STATE/snapshots/MIRROR/MEMBER/ID/meta.json     what, when, which run, checksums
    STATE/snapshots/MIRROR/MEMBER/ID/export.xml    the IRIS export ($SYSTEM.OBJ.Export), if any
    STATE/snapshots/MIRROR/MEMBER/ID/readout.json  every node as read (verifies a restore)

A snapshot is written into a hidden ``.ID.partial`` directory and renamed into place only when
complete, so a crash never leaves a half snapshot that looks usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mirrorsync.core.backup import (
    document_bytes,
    load_readout,
    private_dir,
    write_private_atomically,
)
from mirrorsync.errors import MirrorsyncError
from mirrorsync.iris.results import NodeKey

MEMBER_BACKUP = "member-backup"
"""The member's own item set, exported on the member just before an import replaced it."""
PRIMARY_EXPORT = "primary-export"
"""The primary's export that a run copied to the other members."""


class SnapshotError(MirrorsyncError):
    """A snapshot is missing, unreadable or damaged."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a local file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """One kept snapshot."""

    id: str
    mirror: str
    member: str
    kind: str
    run_id: str
    taken_at: float
    globals: tuple[str, ...]
    """Item-set globals the member held when the snapshot was taken."""
    node_count: int
    export_size: int | None
    export_sha256: str | None
    path: Path
    layout: str | None = None
    """Storage layout of the member when taken (``classic``, ``security-flat``, ...)."""
    version: str | None = None
    """IRIS version of the member when taken."""

    @property
    def export_file(self) -> Path | None:
        """The export, or None when the member held none of the item-set globals."""
        return self.path / "export.xml" if self.export_sha256 is not None else None

    def readout(self) -> dict[NodeKey, str]:
        """The nodes as read when the snapshot was taken (checksum verified)."""
        try:
            return load_readout(self.path / "readout.json")
        except (OSError, ValueError, KeyError) as exc:
            raise SnapshotError(f"snapshot {self.id} of {self.member}: {exc}") from None

    def verify(self) -> None:
        """Raise SnapshotError unless the export file matches its recorded checksum."""
        export = self.export_file
        if export is None:
            return
        try:
            actual = file_sha256(export)
        except OSError as exc:
            raise SnapshotError(f"snapshot {self.id}: cannot read {export}: {exc}") from None
        if actual != self.export_sha256:
            raise SnapshotError(
                f"snapshot {self.id} of {self.member}: export.xml is damaged "
                f"(sha256 {actual[:12]}..., recorded {str(self.export_sha256)[:12]}...)"
            )

    def as_dict(self) -> dict[str, object]:
        """JSON form for `snapshots list --format json`."""
        return {
            "id": self.id,
            "mirror": self.mirror,
            "member": self.member,
            "kind": self.kind,
            "run_id": self.run_id,
            "taken_at": self.taken_at,
            "globals": list(self.globals),
            "nodes": self.node_count,
            "export_size": self.export_size,
            "export_sha256": self.export_sha256,
            "layout": self.layout,
            "version": self.version,
        }


class SnapshotStore:
    """Snapshots under ``state_dir/snapshots``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "snapshots"

    def create(
        self,
        *,
        mirror: str,
        member: str,
        kind: str,
        run_id: str,
        readout: Mapping[NodeKey, str],
        export: Path | None,
        export_sha256: str | None = None,
        layout: str | None = None,
        version: str | None = None,
    ) -> Snapshot:
        """Keep ``export`` (moved in; its checksum re-verified) and ``readout`` as a snapshot."""
        taken = time.time()
        snapshot_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(taken)) + f"-{run_id}"
        parent = private_dir(self.root / mirror / member)
        partial = parent / f".{snapshot_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        private_dir(partial)
        size = digest = None
        if export is not None:
            target = partial / "export.xml"
            shutil.move(export, target)
            target.chmod(0o600)
            digest = file_sha256(target)
            if export_sha256 is not None and digest != export_sha256:
                raise SnapshotError(f"{member}: the export changed while it was being kept")
            size = target.stat().st_size
        write_private_atomically(
            partial / "readout.json", document_bytes(mirror, member, readout)[1]
        )
        meta = {
            "format": 1,
            "id": snapshot_id,
            "mirror": mirror,
            "member": member,
            "kind": kind,
            "run_id": run_id,
            "taken_at": taken,
            "globals": sorted({name for name, _ in readout}),
            "node_count": len(readout),
            "export_size": size,
            "export_sha256": digest,
            "layout": layout,
            "version": version,
        }
        write_private_atomically(partial / "meta.json", json.dumps(meta, indent=2).encode())
        final = parent / snapshot_id
        os.replace(partial, final)
        return self._read(final)

    def _read(self, path: Path) -> Snapshot:
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            return Snapshot(
                id=str(meta["id"]),
                mirror=str(meta["mirror"]),
                member=str(meta["member"]),
                kind=str(meta["kind"]),
                run_id=str(meta["run_id"]),
                taken_at=float(meta["taken_at"]),
                globals=tuple(meta["globals"]),
                node_count=int(meta["node_count"]),
                export_size=meta["export_size"],
                export_sha256=meta["export_sha256"],
                path=path,
                layout=meta.get("layout"),
                version=meta.get("version"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"unreadable snapshot {path}: {exc}") from None

    def all(self, mirror: str, member: str | None = None) -> list[Snapshot]:
        """Snapshots of a mirror (or one member), newest first; damaged ones are skipped."""
        base = self.root / mirror
        members = [base / member] if member else sorted(p for p in base.glob("*") if p.is_dir())
        found = []
        for directory in members:
            for path in directory.glob("*"):
                if path.name.startswith(".") or not path.is_dir():
                    continue
                try:
                    found.append(self._read(path))
                except SnapshotError:
                    continue
        return sorted(found, key=lambda s: (s.taken_at, s.id), reverse=True)

    def get(self, mirror: str, member: str, snapshot_id: str) -> Snapshot:
        """The snapshot ``snapshot_id`` of ``member``; SnapshotError naming the choices if not."""
        path = self.root / mirror / member / snapshot_id
        if "/" in snapshot_id or snapshot_id.startswith(".") or not (path / "meta.json").exists():
            known = ", ".join(s.id for s in self.all(mirror, member)[:5]) or "none"
            raise SnapshotError(
                f"no snapshot {snapshot_id!r} for member {member} of {mirror} (newest: {known})"
            )
        return self._read(path)

    def prune(self, mirror: str, member: str, *, keep: int, max_age_days: float) -> list[str]:
        """Remove snapshots beyond the newest ``keep`` or older than ``max_age_days``.

        The newest snapshot is always kept, whatever its age. Leftover partial directories
        from a crash are removed too.
        """
        directory = self.root / mirror / member
        for partial in directory.glob(".*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        snapshots = self.all(mirror, member)
        cutoff = time.time() - max_age_days * 86400
        removed = []
        for index, snapshot in enumerate(snapshots):
            if index == 0:
                continue
            if index >= keep or snapshot.taken_at < cutoff:
                shutil.rmtree(snapshot.path, ignore_errors=True)
                removed.append(snapshot.id)
        return removed

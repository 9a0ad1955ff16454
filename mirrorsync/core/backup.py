"""Read-out documents on disk: snapshots' read-outs and the baseline of the last sync.

A document holds every node of an item set exactly as read (values as Base64 of UTF-8, so any
byte and character survives) with a SHA-256 of its content. Files are 0600 in 0700
directories: they contain client secrets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from mirrorsync.iris.results import NodeKey


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 (exports hold client secrets)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
    path.chmod(0o700)
    return path


def write_private_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) via a temp file, fsync and rename: all or nothing."""
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def document_bytes(mirror: str, member: str, nodes: Mapping[NodeKey, str]) -> tuple[float, bytes]:
    taken = time.time()
    records = [
        {
            "global": name,
            "subscripts": list(subscripts),
            "value_b64": base64.b64encode(value.encode("utf-8", "surrogatepass")).decode(),
        }
        for (name, subscripts), value in sorted(nodes.items())
    ]
    body = json.dumps(records, separators=(",", ":"))
    document = {
        "format": 1,
        "mirror": mirror,
        "member": member,
        "taken_at": taken,
        "node_count": len(records),
        "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        "nodes": records,
    }
    return taken, json.dumps(document).encode("ascii")


def baseline_path(state_dir: Path, mirror: str) -> Path:
    """Where the primary's read-out of the last fully successful sync is kept."""
    return state_dir / "baselines" / f"{mirror}.json"


def save_baseline(state_dir: Path, mirror: str, primary: str, nodes: Mapping[NodeKey, str]) -> Path:
    """Record what every member held after a fully successful sync, and who was primary.

    Later runs compare against it to tell a change made on the primary since then from one
    made on a member outside mirrorsync, and to notice a failover.
    """
    private_dir(state_dir)
    _, data = document_bytes(mirror, primary, nodes)
    path = baseline_path(state_dir, mirror)
    private_dir(path.parent)
    write_private_atomically(path, data)
    return path


def load_baseline(state_dir: Path, mirror: str) -> tuple[str, dict[NodeKey, str]] | None:
    """(primary name, nodes) of the last fully successful sync, or None if there was none."""
    path = baseline_path(state_dir, mirror)
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    return str(document["member"]), load_readout(path)


def load_readout(path: Path) -> dict[NodeKey, str]:
    """Read a saved read-out back (checking its SHA-256)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    records = document["nodes"]
    body = json.dumps(records, separators=(",", ":"))
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != document["sha256"]:
        raise ValueError(f"{path}: checksum mismatch, the backup is damaged")
    return {
        (r["global"], tuple(r["subscripts"])): base64.b64decode(r["value_b64"]).decode(
            "utf-8", "surrogatepass"
        )
        for r in records
    }

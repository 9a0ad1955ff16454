"""One lock per mirror for every mode (sync, drift, each daemon run): ``flock`` in the state dir.

The kernel releases an ``flock`` when its holder's file description is closed, which includes
any way the process ends (SIGKILL, OOM, crash): a killed run never leaves a stale lock, and
nothing ever deletes a lock file. The holder writes ``MIRROR.holder.json`` beside the lock (pid,
start time, command line, host) for the message a contender prints; that file is diagnosis
only and never decides anything (it can be stale or belong to the previous holder for a moment).

Locks are per open file description, so two runs in one process exclude each other too. The
descriptor is close-on-exec: hooks and other children never inherit (and so never extend) it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrorsync.core.backup import private_dir, write_private_atomically
from mirrorsync.errors import MirrorsyncError

POLL_SECONDS = 0.2


class LockBusy(MirrorsyncError):
    """Another run holds a mirror's lock (exit 75, EX_TEMPFAIL: try again later)."""

    def __init__(self, mirror: str, path: Path, holder: dict[str, Any] | None, waited: float):
        self.mirror = mirror
        self.path = path
        self.holder = holder
        self.waited = waited
        who = describe_holder(holder)
        after = f" after waiting {waited:g}s" if waited else ""
        super().__init__(f"mirror {mirror} is locked by another run ({who}){after}: {path}")


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``pid 123 on host, since ..., command: ...`` from a holder file (or 'holder unknown')."""
    if not holder:
        return "holder unknown"
    parts = [f"pid {holder.get('pid')}"]
    if holder.get("host"):
        parts[0] += f" on {holder['host']}"
    if holder.get("started_at"):
        parts.append(f"since {holder['started_at']}")
    if holder.get("command"):
        parts.append(f"command: {holder['command']}")
    return ", ".join(parts)


def lock_dir(state_dir: Path) -> Path:
    """``STATE_DIR/locks``."""
    return state_dir / "locks"


def lock_path(state_dir: Path, mirror: str) -> Path:
    """The lock file of ``mirror``."""
    return lock_dir(state_dir) / f"{mirror}.lock"


def holder_path(state_dir: Path, mirror: str) -> Path:
    """The holder description written beside the lock (diagnosis only)."""
    return lock_dir(state_dir) / f"{mirror}.holder.json"


def read_holder(state_dir: Path, mirror: str) -> dict[str, Any] | None:
    """The last holder's description, or None if absent or unreadable."""
    try:
        data = json.loads(holder_path(state_dir, mirror).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _command_line() -> str:
    argv = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    return " ".join(argv)[:500]


@dataclass
class MirrorLock:
    """A held lock; `release` (or closing the process) frees it."""

    mirror: str
    path: Path
    descriptor: int | None

    def release(self) -> None:
        """Unlock and close (idempotent). The holder file stays: diagnosis of the last holder."""
        if self.descriptor is None:
            return
        descriptor, self.descriptor = self.descriptor, None
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _open(path: Path) -> int:
    private_dir(path.parent)
    # Read-only is enough for flock. Private like the rest of the state directory (root, the
    # only other user that runs mirrorsync by hand, can open it anyway).
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with contextlib.suppress(OSError):
        os.fchmod(descriptor, 0o600)
    return descriptor


def acquire(
    state_dir: Path,
    mirror: str,
    *,
    wait: float = 0.0,
    command: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MirrorLock:
    """Take ``mirror``'s lock, waiting up to ``wait`` seconds; LockBusy if still held."""
    path = lock_path(state_dir, mirror)
    descriptor = _open(path)
    started = clock()
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            waited = clock() - started
            if waited >= wait:
                raise LockBusy(mirror, path, read_holder(state_dir, mirror), round(waited, 1))
            sleep(min(POLL_SECONDS, wait - waited))
    except BaseException:
        os.close(descriptor)
        raise
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command or _command_line(),
    }
    try:
        target = holder_path(state_dir, mirror)
        write_private_atomically(target, json.dumps(holder).encode("utf-8"))
        target.chmod(0o600)
    except OSError:
        pass  # diagnosis only: never fail a run because the description could not be written
    return MirrorLock(mirror, path, descriptor)


@contextlib.contextmanager
def holding(
    state_dir: Path, mirrors: Sequence[str], *, wait: float = 0.0, command: str | None = None
) -> Iterator[list[MirrorLock]]:
    """Hold the locks of all ``mirrors`` (taken in sorted order, so two waiters cannot
    deadlock), or none: LockBusy releases what was taken. ``wait`` bounds the total wait."""
    taken: list[MirrorLock] = []
    deadline = time.monotonic() + wait
    try:
        for mirror in sorted(set(mirrors)):
            left = max(0.0, deadline - time.monotonic())
            taken.append(acquire(state_dir, mirror, wait=left, command=command))
        yield taken
    finally:
        for lock in reversed(taken):
            lock.release()

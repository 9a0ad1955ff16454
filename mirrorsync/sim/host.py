"""A simulated IRIS host: settings in ``HOME/instance.json``, globals in ``HOME/globals.json``.

Every writer takes an exclusive ``fcntl.flock`` on ``HOME/store.lock`` and replaces the store
atomically (temp file, fsync, rename), so several ``iris session`` processes and the Python API can
work on one host at the same time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrorsync.sim.collation import Tree, canonical, is_canonical_number

DEFAULT_ZV = (
    "IRIS for UNIX (Ubuntu Server LTS for x86-64) 2025.1 (Build 230.2U) Wed Jun 4 2025 18:53:21 EDT"
)

SETTINGS_FILE = "instance.json"
STORE_FILE = "globals.json"
LOCK_FILE = "store.lock"


def hash_password(password: str, salt: str | None = None) -> str:
    """Return ``pbkdf2_sha256$<iterations>$<salt>$<hex>``; the plaintext is never stored."""
    salt = salt if salt is not None else secrets.token_hex(8)
    iterations = 1000  # low on purpose: a simulator, and logins happen on every remote command
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Verify a password against :func:`hash_password` output."""
    try:
        scheme, iterations, salt, expected = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return secrets.compare_digest(digest.hex(), expected)


@dataclass(frozen=True)
class UserSpec:
    """One IRIS user: a salted password hash and roles (``%All`` grants everything)."""

    password_hash: str
    roles: tuple[str, ...] = ("%All",)
    namespace: str = ""
    """Startup namespace; overrides ``-U`` when set (facts §4.1)."""

    @classmethod
    def with_password(cls, password: str, roles: tuple[str, ...] = ("%All",)) -> UserSpec:
        """Build a user from a plaintext password (hashed immediately)."""
        return cls(password_hash=hash_password(password), roles=roles)


# The display form of a mirror status: $SYSTEM.Mirror.GetMemberStatus() and `iris qlist`.
MIRROR_STATUS_DISPLAY = {
    # CONFIRMED (facts §5): the code maps NOTINIT to "Not initialized" (lower-case i).
    "NOTINIT": "Not initialized",
    "PRIMARY": "Primary",
    "BACKUP": "Backup",
    "CONNECTED": "Connected",
    "TRANSITION": "Transition",
    "SYNCHRONIZING": "Synchronizing",
    "WAITING": "Waiting",
    "STOPPED": "Stopped",
    "CRASHED": "Crashed",
    "DOWN": "Down",
}


@dataclass(frozen=True)
class HostSettings:
    """Configuration of one simulated instance (JSON-serialisable via :meth:`to_json`)."""

    node: str
    instance: str
    zv: str = DEFAULT_ZV
    mirror_name: str = ""
    mirror_is_member: int = 0
    mirror_status: str = "NOTINIT"
    mirror_member_type: str = "Not Member"
    os_auth: bool = True
    users: Mapping[str, UserSpec] = field(default_factory=dict)
    os_user_roles: tuple[str, ...] = ("%All",)
    """Roles of the OS-authenticated user (os_auth True)."""
    load_kill: str = "kill"
    """``kill``: Load kills each exported (sub)tree first (IRIS default); ``merge``: never kills."""
    load_transactional: bool = True
    """Whether Load's kills and sets join an open transaction (TROLLBACK undoes them).
    ASSUMPTION (facts: unknown, issue 4): True; False models an IRIS where they do not."""
    fault_load_pause: float | None = None
    """Fault injection for tests: Load sleeps this long after its kill, before any set (the
    worst moment for a connection cut or a killed client)."""
    fault_load_after_nodes: int | None = None
    """Fault injection for tests: Load fails with ``<FILEFULL>`` after setting this many nodes
    (after its kill), like a database that runs out of space halfway."""
    fault_load_failures: int = 1
    """How many Loads the fault above hits before it clears itself (a transient fault)."""
    namespace_default: str = "USER"
    namespaces: tuple[str, ...] = ("%SYS", "USER")
    mirrored_globals: tuple[str, ...] = ()
    """Globals (no caret) mapped from %SYS into a mirrored database (issue 6, checklist 10):
    ``GetGlobalDest`` names ``MIRRORED_DB_DIRECTORY`` for them and ``SYS.Database`` says that
    database is mirrored. The simulator does not replicate their data between hosts."""
    running: bool = True
    """False: the instance is down (``qlist`` says so, ``session`` refuses)."""
    install_dir: str = "/usr/irissys"
    superserver_port: int = 1972
    webserver_port: int = 52773
    started: str = "Thu Dec  3 08:00:00 2026"
    """Shown as ``running, since <started>`` / ``down, last used <started>``."""

    def __post_init__(self) -> None:
        """Reject settings the simulator cannot honour (a typo would silently change behaviour)."""
        if self.load_kill not in ("kill", "merge"):
            raise ValueError(f"load_kill must be 'kill' or 'merge', not {self.load_kill!r}")
        if self.mirror_is_member not in (0, 1, 2):
            raise ValueError(f"mirror_is_member must be 0, 1 or 2, not {self.mirror_is_member!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["users"] = {name: dataclasses.asdict(user) for name, user in self.users.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostSettings:
        """Inverse of :meth:`to_json`; unknown keys are rejected."""
        values = dict(data)
        users = {
            name: UserSpec(
                password_hash=user["password_hash"],
                roles=tuple(user.get("roles", ("%All",))),
                namespace=user.get("namespace", ""),
            )
            for name, user in values.pop("users", {}).items()
        }
        for key in ("os_user_roles", "namespaces", "mirrored_globals"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(users=users, **values)


Subscript = str | int


def _sub_to_str(subscript: Subscript) -> str:
    """Subscripts are M strings; integers become their canonical text."""
    if isinstance(subscript, bool):
        raise TypeError("bool is not a subscript")
    if isinstance(subscript, int):
        return str(subscript)
    return subscript


def _sub_from_str(subscript: str) -> Subscript:
    """Canonical integers come back as ``int``; everything else stays ``str``."""
    if is_canonical_number(subscript) and "." not in subscript:
        return int(subscript)
    return subscript


class GlobalStore:
    """All globals of a host in memory, loaded from and saved to ``globals.json``."""

    def __init__(self) -> None:
        """Start empty."""
        self.trees: dict[str, Tree] = {}
        self.stamp: tuple[int, int, int] | None = None

    def tree(self, name: str, create: bool = False) -> Tree | None:
        """The tree of a global (created on demand for writes)."""
        found = self.trees.get(name)
        if found is None and create:
            found = self.trees[name] = Tree()
        return found

    def drop_empty(self) -> None:
        """Forget globals without nodes (a killed global no longer exists)."""
        for name in [name for name, tree in self.trees.items() if len(tree) == 0]:
            del self.trees[name]

    def to_json(self) -> dict[str, Any]:
        """Serialise: ``{"globals": {name: [[subs...], value], ...}}`` in collation order."""
        self.drop_empty()
        return {
            "format": 1,
            "globals": {
                name: [[list(subs), value] for subs, value in self.trees[name].items()]
                for name in sorted(self.trees)
            },
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        """Replace the content with a :meth:`to_json` dict."""
        self.trees = {}
        for name, nodes in data.get("globals", {}).items():
            tree = Tree()
            for subs, value in nodes:
                tree.set(tuple(str(s) for s in subs), value)
            self.trees[name] = tree


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the store file version (inode, mtime, size)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _atomic_write(path: Path, text: str) -> None:
    """Write a file atomically: temp file in the same dir, fsync, rename."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


class SimHost:
    """One simulated IRIS instance on disk (see module docstring for the layout)."""

    def __init__(self, home: Path) -> None:
        """Open an existing host directory."""
        self.home = Path(home)
        settings_path = self.home / SETTINGS_FILE
        if not settings_path.is_file():
            raise FileNotFoundError(f"not a simulated IRIS host: {self.home} (no {SETTINGS_FILE})")
        self._settings = HostSettings.from_json(json.loads(settings_path.read_text("utf-8")))
        self._settings_stamp = _stamp(settings_path)
        self.store = GlobalStore()
        self._lock_depth = 0
        self._lock_handle: Any = None

    @classmethod
    def create(cls, home: Path, settings: HostSettings) -> SimHost:
        """Make the host directory (mode 0700) with settings and an empty store."""
        home = Path(home)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        _atomic_write(home / SETTINGS_FILE, json.dumps(settings.to_json(), indent=2) + "\n")
        if not (home / STORE_FILE).exists():
            _atomic_write(home / STORE_FILE, json.dumps(GlobalStore().to_json()) + "\n")
        return cls(home)

    @property
    def settings(self) -> HostSettings:
        """Current settings (re-read when the file changed, so another process's update is seen)."""
        path = self.home / SETTINGS_FILE
        stamp = _stamp(path)
        if stamp != self._settings_stamp:
            self._settings = HostSettings.from_json(json.loads(path.read_text("utf-8")))
            self._settings_stamp = stamp
        return self._settings

    def update_settings(self, **changes: Any) -> None:
        """Persist changed settings, e.g. ``update_settings(mirror_status="PRIMARY")``."""
        with self.locked():
            updated = dataclasses.replace(self.settings, **changes)
            path = self.home / SETTINGS_FILE
            _atomic_write(path, json.dumps(updated.to_json(), indent=2) + "\n")
            self._settings = updated
            self._settings_stamp = _stamp(path)

    # -- locking and persistence -------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the host's exclusive lock (re-entrant within this object)."""
        if self._lock_depth == 0:
            handle = open(self.home / LOCK_FILE, "a+")  # noqa: SIM115 - held across the yield
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self._lock_handle = handle
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
                self._lock_handle.close()
                self._lock_handle = None

    def refresh(self) -> None:
        """Re-read the store if another process replaced it (call with the lock held)."""
        path = self.home / STORE_FILE
        stamp = _stamp(path)
        if stamp != self.store.stamp:
            data = json.loads(path.read_text("utf-8")) if stamp is not None else {}
            self.store.load_json(data)
            self.store.stamp = stamp

    def save(self) -> None:
        """Write the store atomically (call with the lock held)."""
        path = self.home / STORE_FILE
        # ensure_ascii keeps lone surrogates ($C(55296)) writable: JSON escapes them.
        _atomic_write(path, json.dumps(self.store.to_json()) + "\n")
        self.store.stamp = _stamp(path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[GlobalStore]:
        """Lock, refresh, yield the store, save. Used by the API and by each session line."""
        with self.locked():
            self.refresh()
            yield self.store
            self.save()

    # -- Python API ---------------------------------------------------------------------------

    def set(self, name: str, subscripts: tuple[Subscript, ...], value: str) -> None:
        """Set ``^name(subscripts...)=value``."""
        subs = tuple(_sub_to_str(s) for s in subscripts)
        if "" in subs:
            raise ValueError("<SUBSCRIPT>: an empty string is not a valid subscript")
        with self.transaction() as store:
            tree = store.tree(name, create=True)
            assert tree is not None
            tree.set(subs, value)

    def get(self, name: str, subscripts: tuple[Subscript, ...] = ()) -> str | None:
        """Value of ``^name(subscripts...)``, or None when the node has no value."""
        with self.locked():
            self.refresh()
            tree = self.store.tree(name)
            return None if tree is None else tree.get(tuple(_sub_to_str(s) for s in subscripts))

    def kill(self, name: str, subscripts: tuple[Subscript, ...] = ()) -> None:
        """Kill ``^name(subscripts...)`` and everything under it."""
        with self.transaction() as store:
            tree = store.tree(name)
            if tree is not None:
                tree.kill(tuple(_sub_to_str(s) for s in subscripts))

    def nodes(self, name: str) -> list[tuple[tuple[Subscript, ...], str]]:
        """Every node of ``^name`` holding a value, in collation order (root node is ``()``)."""
        with self.locked():
            self.refresh()
            tree = self.store.tree(name)
            if tree is None:
                return []
            return [(tuple(_sub_from_str(s) for s in subs), value) for subs, value in tree.items()]

    def global_names(self) -> list[str]:
        """Names of the existing globals, without caret, sorted as ``^$GLOBAL`` lists them."""
        with self.locked():
            self.refresh()
            self.store.drop_empty()
            return sorted(self.store.trees)


__all__ = [
    "DEFAULT_ZV",
    "HostSettings",
    "SimHost",
    "UserSpec",
    "canonical",
    "check_password",
    "hash_password",
]

"""Pinned host keys: reading an OpenSSH known_hosts file and checking a received key against it.

Only the file named in the configuration is read, never ``~/.ssh``: what mirrorsync trusts must be
visible in its own configuration (field note 14).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

from mirrorsync.errors import HostKeyError

# Host key algorithms paramiko negotiates for a key type found in known_hosts. An "ssh-rsa" entry is
# negotiated with the SHA-2 signature algorithms (the SHA-1 "ssh-rsa" one is disabled by OpenSSH).
_ALGORITHMS_FOR_KEY_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


def fingerprint(key: paramiko.PKey) -> str:
    """Return the key's fingerprint as OpenSSH prints it: ``SHA256:`` + unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """Return the known_hosts name of a host: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def known_hosts_line(host: str, port: int, key: paramiko.PKey) -> str:
    """Return the known_hosts line that pins ``key`` for ``host:port``."""
    return f"{known_hosts_name(host, port)} {key.get_name()} {key.get_base64()}"


@dataclass(frozen=True)
class PinnedKeys:
    """The keys known_hosts holds for one host (trusted and explicitly revoked)."""

    name: str
    trusted: tuple[paramiko.PKey, ...]
    revoked: tuple[paramiko.PKey, ...]

    def key_types(self) -> tuple[str, ...]:
        """Return the key types pinned for this host, in file order, without duplicates."""
        return tuple(dict.fromkeys(key.get_name() for key in self.trusted))

    def preferred_algorithms(self, available: tuple[str, ...]) -> tuple[str, ...]:
        """Order ``available`` host key algorithms so the pinned key types are negotiated first.

        Other algorithms stay in the list (after the pinned ones) so a server that no longer offers
        a pinned type still completes key exchange and we can report expected vs received
        fingerprints instead of an opaque "no matching host key type" (field note 11).
        """
        wanted: list[str] = []
        for key_type in self.key_types():
            wanted.extend(_ALGORITHMS_FOR_KEY_TYPE.get(key_type, (key_type,)))
        first = [algorithm for algorithm in wanted if algorithm in available]
        return tuple(dict.fromkeys([*first, *available]))


def load_pinned_keys(known_hosts: Path, host: str, port: int) -> PinnedKeys:
    """Read ``known_hosts`` and return the keys pinned for ``host:port`` (hashed names included).

    ``@cert-authority`` lines are ignored (mirrorsync does not trust host certificates);
    ``@revoked`` keys are refused even if also listed as trusted.
    """
    name = known_hosts_name(host, port)
    try:
        text = known_hosts.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HostKeyError(
            f"known_hosts file {known_hosts} does not exist: create it with the members' pinned "
            "host keys (see `ssh-keyscan` and verify each fingerprint out of band)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise HostKeyError(f"cannot read known_hosts file {known_hosts}: {error}") from None

    trusted: list[paramiko.PKey] = []
    revoked: list[paramiko.PKey] = []
    for line_number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
            if marker not in ("@revoked", "@cert-authority"):
                continue
        try:
            entry = HostKeyEntry.from_line(line, line_number)
        except (InvalidHostKey, paramiko.SSHException) as error:
            raise HostKeyError(
                f"known_hosts file {known_hosts} line {line_number} is malformed: {error}"
            ) from None
        if entry is None or not _entry_matches(entry, name):
            continue
        if marker == "@revoked":
            revoked.append(entry.key)
        elif not marker:
            trusted.append(entry.key)
    return PinnedKeys(name=name, trusted=tuple(trusted), revoked=tuple(revoked))


def _entry_matches(entry: HostKeyEntry, name: str) -> bool:
    """Whether a known_hosts entry names ``name``, in clear or hashed (``|1|salt|hash``) form."""
    for pattern in entry.hostnames:
        if pattern.startswith("|1|"):
            salt = pattern.split("|")[2]
            if paramiko.HostKeys.hash_host(name, salt) == pattern:
                return True
        elif pattern == name:
            return True
    return False


def check_host_key(
    pinned: PinnedKeys, received: paramiko.PKey, *, member: str, host: str, port: int
) -> None:
    """Raise `HostKeyError` unless ``received`` is one of the keys pinned for this host."""
    received_text = f"{received.get_name()} {fingerprint(received)}"
    where = f"member {member} ({host}:{port})"
    if any(_same_key(received, key) for key in pinned.revoked):
        raise HostKeyError(
            f"{where} presented host key {received_text}, which known_hosts marks @revoked"
        )
    if any(_same_key(received, key) for key in pinned.trusted):
        return
    if not pinned.trusted:
        raise HostKeyError(
            f"{where} is not in known_hosts; it presented host key {received_text}. "
            "Verify that fingerprint out of band (on the member: "
            "`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`), then pin it by adding this line to "
            f"the known_hosts file: {known_hosts_line(host, port, received)}"
        )
    expected = ", ".join(f"{key.get_name()} {fingerprint(key)}" for key in pinned.trusted)
    raise HostKeyError(
        f"HOST KEY CHANGED for {where}: expected {expected} but received {received_text}. "
        "This may be an attack or a reinstalled host; refusing to connect. If the change is "
        f"legitimate, replace the pinned line for {pinned.name} in the known_hosts file."
    )


def _same_key(left: paramiko.PKey, right: paramiko.PKey) -> bool:
    return left.get_name() == right.get_name() and left.asbytes() == right.asbytes()

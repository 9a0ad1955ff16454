"""Scanning members' host keys and pinning one on request (``mirrorsync hostkeys``).

Nothing is ever trusted implicitly (field note 14): a scan only shows what each host presents and
how that compares with known_hosts; a pin is one line appended after the operator confirmed the
fingerprint. A key that differs from a pinned one is never replaced here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mirrorsync.config.model import Config, MemberConfig, MirrorConfig
from mirrorsync.errors import HostKeyError, MirrorsyncError
from mirrorsync.ssh.endpoints import jump_endpoint, member_endpoint, ssh_settings
from mirrorsync.ssh.hostkeys import fingerprint, load_pinned_keys
from mirrorsync.ssh.transport import Endpoint, SshConnection


class PinStatus(StrEnum):
    """How a presented key compares with known_hosts."""

    PINNED = "pinned"
    UNKNOWN = "unknown"
    CHANGED = "changed"
    REVOKED = "revoked"
    ERROR = "error"
    """The host could not be scanned (unreachable, or its jump host is not trusted yet)."""


@dataclass(frozen=True)
class HostScan:
    """One host (a member or a jump host) as scanned."""

    target: str
    """``member NAME`` or ``jump host of NAME``."""
    host: str
    port: int
    status: PinStatus
    key_type: str | None = None
    fingerprint: str | None = None
    known_hosts_line: str | None = None
    pinned: tuple[str, ...] = ()
    """``type fingerprint`` of every key pinned for this host."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["status"] = self.status.value
        data["pinned"] = list(self.pinned)
        return data


def _pinned(known_hosts: Path, host: str, port: int) -> tuple[list[str], list[str]]:
    """(trusted, revoked) keys for host:port as ``type fingerprint``; no file = nothing pinned."""
    if not known_hosts.exists():
        return [], []
    keys = load_pinned_keys(known_hosts, host, port)
    trusted = [f"{key.get_name()} {fingerprint(key)}" for key in keys.trusted]
    revoked = [f"{key.get_name()} {fingerprint(key)}" for key in keys.revoked]
    return trusted, revoked


def scan_endpoint(config: Config, endpoint: Endpoint, target: str) -> HostScan:
    """Scan one host (through its jump host, if any) and compare with known_hosts."""
    try:
        trusted, revoked = _pinned(config.ssh.known_hosts, endpoint.host, endpoint.port)
        scanned = SshConnection(endpoint, ssh_settings(config), name=target).scan_host_key()
    except MirrorsyncError as error:
        return HostScan(target, endpoint.host, endpoint.port, PinStatus.ERROR, error=str(error))
    presented = f"{scanned.key_type} {scanned.fingerprint}"
    if presented in revoked:
        status = PinStatus.REVOKED
    elif presented in trusted:
        status = PinStatus.PINNED
    elif trusted:
        status = PinStatus.CHANGED
    else:
        status = PinStatus.UNKNOWN
    return HostScan(
        target,
        endpoint.host,
        endpoint.port,
        status,
        key_type=scanned.key_type,
        fingerprint=scanned.fingerprint,
        known_hosts_line=scanned.known_hosts_line,
        pinned=tuple(trusted),
    )


def scan_members(config: Config, mirrors: Iterable[MirrorConfig]) -> list[HostScan]:
    """Every member's key, each jump host's key first (once per jump host)."""
    scans: list[HostScan] = []
    seen_jumps: set[tuple[str, int]] = set()
    for mirror in mirrors:
        for member in mirror.members:
            if member.jump_host is not None:
                where = (member.jump_host.host, member.jump_host.port)
                if where not in seen_jumps:
                    seen_jumps.add(where)
                    jump = jump_endpoint(member.jump_host)
                    scans.append(scan_endpoint(config, jump, f"jump host of {member.name}"))
            scans.append(scan_endpoint(config, member_endpoint(member), f"member {member.name}"))
    return scans


def find_member(config: Config, name: str, mirror_name: str | None = None) -> MemberConfig:
    """The member called ``name`` (in ``mirror_name`` if given); ConfigError-like otherwise."""
    mirrors = [config.mirror(mirror_name)] if mirror_name else list(config.mirrors)
    found = [member for mirror in mirrors for member in mirror.members if member.name == name]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(m.name for mirror in mirrors for m in mirror.members)
        raise MirrorsyncError(f"no member named {name!r} (configured: {known})")
    raise MirrorsyncError(f"member {name!r} exists in several mirrors: choose one with --mirror")


def scan_for_trust(config: Config, member: MemberConfig, *, jump: bool) -> HostScan:
    """Scan the member (or, with ``jump``, its jump host) before pinning."""
    if jump:
        if member.jump_host is None:
            raise MirrorsyncError(f"member {member.name} has no jump host configured")
        return scan_endpoint(config, jump_endpoint(member.jump_host), f"jump host of {member.name}")
    return scan_endpoint(config, member_endpoint(member), f"member {member.name}")


def append_pin(known_hosts: Path, line: str) -> None:
    """Append one known_hosts line (file created 0644 if missing; never rewritten)."""
    if "\n" in line or "\r" in line:
        raise HostKeyError("refusing to pin a known_hosts line that spans several lines")
    prefix = ""
    if known_hosts.exists():
        content = known_hosts.read_bytes()
        if content and not content.endswith(b"\n"):
            prefix = "\n"
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(descriptor, "a", encoding="ascii") as handle:
        handle.write(f"{prefix}{line}\n")
        handle.flush()
        os.fsync(handle.fileno())

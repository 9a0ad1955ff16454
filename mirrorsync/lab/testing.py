"""A single lab sshd with its client key and known_hosts, for tests of the SSH layer."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrorsync.lab.sshd import SshdInstance, start_sshd, write_private_key
from mirrorsync.ssh import Endpoint, SshConnection, SshSettings


@dataclass
class SshdServer:
    """One running sshd with a client key it accepts and a known_hosts file pinning its key."""

    instance: SshdInstance
    identity: Path
    known_hosts: Path
    authorized_keys: Path
    user: str

    @property
    def host(self) -> str:
        """The loopback address sshd listens on."""
        return self.instance.address

    @property
    def port(self) -> int:
        """The port sshd listens on."""
        return self.instance.port

    def endpoint(self, identity: Path | None = None) -> Endpoint:
        """Where to connect, with this server's client key unless another is given."""
        return Endpoint(self.host, self.port, self.user, identity or self.identity)

    def settings(self, **changes: Any) -> SshSettings:
        """Short timeouts suited to loopback, overridable per test."""
        values: dict[str, Any] = {
            "known_hosts": self.known_hosts,
            "connect_timeout": 5,
            "banner_timeout": 5,
            "auth_timeout": 5,
        }
        values.update(changes)
        return SshSettings(**values)

    def connection(self, *, identity: Path | None = None, **settings: Any) -> SshConnection:
        """A new (not yet connected) connection to this server, as member ``iris-test``."""
        return SshConnection(self.endpoint(identity), self.settings(**settings), name="iris-test")

    def host_public_key(self, key_type: str = "ed25519") -> str:
        """``type base64`` of one of the server's host keys."""
        path = self.instance.directory / f"ssh_host_{key_type}_key.pub"
        fields = path.read_text(encoding="ascii").split()
        return f"{fields[0]} {fields[1]}"


def make_sshd_server(
    base: Path,
    *,
    address: str = "127.0.0.11",
    host_key_types: tuple[str, ...] = ("ed25519",),
    pin: bool = True,
    **options: Any,
) -> SshdServer:
    """Start an sshd with its files in ``base`` (which must exist); ``pin`` fills known_hosts.

    Extra keyword arguments go to `start_sshd`. The caller stops it with `stop_sshd`.
    """
    identity = base / "id_ed25519"
    authorized_keys = base / "authorized_keys"
    authorized_keys.write_text(write_private_key(identity) + "\n", encoding="ascii")
    user = getpass.getuser()
    instance = start_sshd(
        base / "server",
        name="iris-test",
        address=address,
        authorized_keys=authorized_keys,
        user=user,
        host_key_types=host_key_types,
        **options,
    )
    server = SshdServer(instance, identity, base / "known_hosts", authorized_keys, user)
    lines = [f"[{address}]:{server.port} {server.host_public_key(t)}\n" for t in host_key_types]
    server.known_hosts.write_text("".join(lines) if pin else "", encoding="ascii")
    return server

"""The SSH boundary: the only package that imports paramiko.

Everything above it (the IRIS terminal layer, the sync engine) uses these names only.
"""

from __future__ import annotations

from mirrorsync.ssh.hostkeys import fingerprint, known_hosts_line, known_hosts_name
from mirrorsync.ssh.transport import (
    CommandResult,
    Endpoint,
    FileDigest,
    ScannedHostKey,
    SshConnection,
    SshSettings,
    command_line,
    local_digest,
)

__all__ = [
    "CommandResult",
    "Endpoint",
    "FileDigest",
    "ScannedHostKey",
    "SshConnection",
    "SshSettings",
    "command_line",
    "fingerprint",
    "known_hosts_line",
    "known_hosts_name",
    "local_digest",
]

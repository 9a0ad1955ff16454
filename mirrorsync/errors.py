"""Exception hierarchy shared by every layer.

Each error's ``str()`` is a complete message for an operator: it names what failed and where.
"""

from __future__ import annotations


class MirrorsyncError(Exception):
    """Base class for every expected failure."""


class ConfigError(MirrorsyncError):
    """The configuration file is missing, unreadable or invalid."""


class TransportError(MirrorsyncError):
    """An SSH-level failure (connect, auth, channel, SFTP)."""

    transient: bool = True
    """Whether retrying the same step may succeed."""


class HostKeyError(TransportError):
    """The member's host key is unknown or does not match the pinned one. Never retried."""

    transient = False


class AuthenticationError(TransportError):
    """SSH authentication was refused. Never retried."""

    transient = False


class RemoteTimeoutError(TransportError):
    """A remote command or transfer exceeded its deadline."""


class TransferError(TransportError):
    """A file transfer completed but its size or SHA-256 did not verify."""


class IrisError(MirrorsyncError):
    """IRIS answered, but not as asked (error status, missing frame, login refused)."""


class IrisLoginError(IrisError):
    """The IRIS terminal refused the configured credentials."""


class ProtocolError(IrisError):
    """The output of ``iris session`` could not be parsed (missing or malformed frame)."""


class RunAbandoned(MirrorsyncError):
    """The run was asked to stop (deadline, signal) and stopped at a safe step boundary."""

"""One SSH connection to one mirror member: remote commands and verified SFTP transfers.

This is the only module that talks to paramiko's transport. Each phase of connecting (TCP connect,
banner, key exchange, authentication) has its own timeout and its own error message (field note
9), every remote call has its own hard deadline (field notes 8 and 10), and host keys are checked
against the configured known_hosts file only (field notes 11 and 14).

Secrets: ``run(stdin=...)`` may carry a password (the IRIS login). It is never logged, never put
into an exception message, and never kept after the call.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import select
import shlex
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self, TypeVar

import paramiko
import structlog

from mirrorsync.errors import (
    AuthenticationError,
    HostKeyError,
    RemoteTimeoutError,
    TransferError,
    TransportError,
)
from mirrorsync.ssh.hostkeys import (
    check_host_key,
    fingerprint,
    known_hosts_line,
    load_pinned_keys,
)

log = structlog.get_logger(__name__)

_CHUNK = 32768
"""SFTP read/write size: the largest payload every SFTP server accepts in one request."""

_IDLE_LIMIT = 60.0
"""A connection unused for longer is reopened instead of trusted (field note 13: dead peers)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class SshSettings:
    """Timeouts (seconds) and the pinned host keys shared by every connection."""

    known_hosts: Path
    connect_timeout: float = 10
    banner_timeout: float = 15
    auth_timeout: float = 15


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to log in."""

    host: str
    port: int
    user: str
    identity_file: Path
    jump: Endpoint | None = None
    """A jump host to tunnel through (``direct-tcpip``), or None to connect directly."""


@dataclass(frozen=True)
class CommandResult:
    """What a remote command returned.

    ``exit_status`` is -1 if the command ended without one (killed by a signal).
    """

    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes

    def stderr_tail(self, lines: int = 5) -> str:
        """Return the last lines of stderr, decoded leniently, for error messages."""
        text = self.stderr.decode("utf-8", errors="replace").strip()
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class FileDigest:
    """Size in bytes and lowercase hex SHA-256 of a file."""

    size: int
    sha256: str


@dataclass(frozen=True)
class ScannedHostKey:
    """A host key as presented by a server, before anyone decided to trust it."""

    key_type: str
    fingerprint: str
    known_hosts_line: str


def command_line(argv: Sequence[str]) -> str:
    """Return the remote command string for ``argv``: every element quoted for a POSIX shell.

    sshd hands the string to the login shell, so quoting each element is what keeps a value from the
    configuration (a path, an instance name) from ever being read as shell syntax.
    """
    if not argv:
        raise ValueError("argv must name a command")
    return " ".join(shlex.quote(argument) for argument in argv)


def local_digest(path: Path) -> FileDigest:
    """Return the size and SHA-256 of a local file."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return FileDigest(size=size, sha256=sha.hexdigest())


def load_identity(path: Path) -> paramiko.PKey:
    """Load an unencrypted private key (ed25519, ecdsa or rsa) or raise `AuthenticationError`."""
    if not path.exists():
        raise AuthenticationError(f"identity file {path} does not exist")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # What OpenSSH refuses too ("UNPROTECTED PRIVATE KEY FILE"): a key others can read is
        # not a secret any more.
        raise AuthenticationError(
            f"identity file {path} is accessible by other users (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise _encrypted_identity(path) from None
    except TypeError as error:
        # cryptography raises TypeError("Password was not given but private key is encrypted").
        if "encrypted" in str(error):
            raise _encrypted_identity(path) from None
        raise AuthenticationError(f"identity file {path} is not a usable key: {error}") from None
    except PermissionError:
        raise AuthenticationError(f"identity file {path} is not readable by this user") from None
    except (OSError, ValueError, paramiko.SSHException) as error:
        raise AuthenticationError(
            f"identity file {path} is not a private key mirrorsync can use "
            f"(ed25519, ecdsa or rsa in OpenSSH or PEM format): {error}"
        ) from None


def _encrypted_identity(path: Path) -> AuthenticationError:
    return AuthenticationError(
        f"identity file {path} is encrypted with a passphrase; mirrorsync runs unattended and "
        "needs an unencrypted key dedicated to it (restrict it in authorized_keys)"
    )


class SshConnection:
    """A lazily opened SSH connection to one member, with one SFTP client kept for transfers."""

    def __init__(self, endpoint: Endpoint, settings: SshSettings, *, name: str) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.name = name
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._last_used = 0.0
        self._jump: SshConnection | None = None  # the hop's own connection while tunnelling
        self._log = log.bind(member=name, host=endpoint.host, port=endpoint.port)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def where(self) -> str:
        """``member NAME (host:port)``, the prefix of every error message."""
        return f"member {self.name} ({self.endpoint.host}:{self.endpoint.port})"

    def connect(self) -> None:
        """Open the connection unless open and recently used; raise a `TransportError` subclass."""
        if self._transport is not None:
            idle = time.monotonic() - self._last_used
            if self._transport.is_active() and idle < _IDLE_LIMIT:
                return
            self.close()
        identity = load_identity(self.endpoint.identity_file)
        pinned = load_pinned_keys(self.settings.known_hosts, self.endpoint.host, self.endpoint.port)
        started = time.monotonic()
        sock = self._open_socket()
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = self.settings.banner_timeout
            # Key exchange gets the banner timeout too: a server that answers the banner but hangs
            # in key exchange is as stuck as one that never answers.
            transport.handshake_timeout = self.settings.banner_timeout
            transport.auth_timeout = self.settings.auth_timeout
            options = transport.get_security_options()
            options.key_types = pinned.preferred_algorithms(tuple(options.key_types))
            self._handshake(transport)
            received = transport.get_remote_server_key()
            check_host_key(
                pinned,
                received,
                member=self.name,
                host=self.endpoint.host,
                port=self.endpoint.port,
            )
            self._authenticate(transport, identity)
        except BaseException:
            transport.close()
            sock.close()
            self._close_jump()
            raise
        self._transport = transport
        self._last_used = time.monotonic()
        self._log.info(
            "ssh.connect",
            user=self.endpoint.user,
            host_key=f"{received.get_name()} {fingerprint(received)}",
            duration=round(time.monotonic() - started, 3),
        )

    def scan_host_key(self) -> ScannedHostKey:
        """Fetch the host key the member presents, trusting nothing and not logging in.

        For an explicit pin command (field note 14): show the fingerprint so the operator can
        verify it out of band before adding the line to known_hosts. Nothing is written here.
        """
        sock = self._open_socket()
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = self.settings.banner_timeout
            transport.handshake_timeout = self.settings.banner_timeout
            with contextlib.suppress(HostKeyError):
                # Negotiate the pinned key type first, as connect() does, so the key shown is
                # the one a connection would check (no known_hosts yet: the server's choice).
                pinned = load_pinned_keys(
                    self.settings.known_hosts, self.endpoint.host, self.endpoint.port
                )
                options = transport.get_security_options()
                options.key_types = pinned.preferred_algorithms(tuple(options.key_types))
            self._handshake(transport)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
            sock.close()
            self._close_jump()
        return ScannedHostKey(
            key_type=key.get_name(),
            fingerprint=fingerprint(key),
            known_hosts_line=known_hosts_line(self.endpoint.host, self.endpoint.port, key),
        )

    def _open_socket(self) -> socket.socket | paramiko.Channel:
        if self.endpoint.jump is not None:
            return self._open_tunnel(self.endpoint.jump)
        address = (self.endpoint.host, self.endpoint.port)
        try:
            return socket.create_connection(address, timeout=self.settings.connect_timeout)
        except TimeoutError:
            raise TransportError(
                f"{self.where}: TCP connect timed out after {self.settings.connect_timeout:g}s"
            ) from None
        except OSError as error:
            reason = error.strerror or str(error)
            raise TransportError(f"{self.where}: TCP connect failed: {reason}") from None

    def _handshake(self, transport: paramiko.Transport) -> None:
        """Read the banner and run key exchange, reporting which of the two failed."""
        done = threading.Event()
        transport.start_client(event=done)
        # paramiko enforces banner and handshake timeouts itself; this outer bound only catches a
        # transport thread that never reports back at all.
        limit = 2 * self.settings.banner_timeout + 5
        deadline = time.monotonic() + limit
        while not done.wait(0.05):
            if time.monotonic() > deadline:
                break
        if done.is_set() and transport.is_active():
            return
        error = transport.get_exception()
        phase = "key exchange" if transport.remote_version else "banner"
        if error is None:
            detail = f"timed out after {limit:g}s" if not done.is_set() else "connection closed"
        elif "banner" in str(error).lower() or not transport.remote_version:
            phase = "banner"
            detail = f"no SSH banner within {self.settings.banner_timeout:g}s ({error})"
        else:
            detail = str(error) or type(error).__name__
        raise TransportError(f"{self.where}: SSH {phase} failed: {detail}")

    def _authenticate(self, transport: paramiko.Transport, identity: paramiko.PKey) -> None:
        user = self.endpoint.user
        started = time.monotonic()
        try:
            transport.auth_publickey(user, identity)
        except paramiko.BadAuthenticationType as error:
            raise AuthenticationError(
                f"{self.where}: the server does not accept public key authentication for "
                f"{user!r} (it allows: {', '.join(error.allowed_types) or 'nothing'})"
            ) from None
        except paramiko.AuthenticationException as error:
            if "timeout" in str(error).lower():
                # A server that does not answer in time may answer next time: transient.
                raise TransportError(
                    f"{self.where}: SSH authentication timed out after "
                    f"{time.monotonic() - started:.1f}s"
                ) from None
            raise AuthenticationError(
                f"{self.where}: SSH authentication as {user!r} with key "
                f"{self.endpoint.identity_file} ({identity.get_name()} {fingerprint(identity)}) "
                "was refused: is its public key in that user's authorized_keys?"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise TransportError(f"{self.where}: SSH authentication failed: {error}") from None
        if not transport.is_authenticated():
            raise AuthenticationError(
                f"{self.where}: SSH authentication as {user!r} needs more than a public key "
                "(multi-factor); mirrorsync supports public key authentication only"
            )

    def close(self) -> None:
        """Close the SFTP client and the connection; safe to call any number of times."""
        sftp, transport = self._sftp, self._transport
        self._sftp = None
        self._transport = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
            self._log.debug("ssh.close")
        self._close_jump()

    # -- jump host (field note 12) -------------------------------------------------------------

    def _open_tunnel(self, jump: Endpoint) -> paramiko.Channel:
        """Connect to the jump host (its host key checked like a member's), open a tunnel."""
        from mirrorsync.ssh.jump import open_direct_tcpip

        self._close_jump()
        hop = SshConnection(jump, self.settings, name=f"{self.name} jump host")
        self._jump = hop
        try:
            channel = open_direct_tcpip(
                hop._active_transport(),
                self.endpoint.host,
                self.endpoint.port,
                timeout=self.settings.connect_timeout,
                where=self.where,
                via=f"{jump.host}:{jump.port}",
            )
        except BaseException:
            self._close_jump()
            raise
        self._log.debug("ssh.tunnel", via=f"{jump.host}:{jump.port}")
        return channel

    def _close_jump(self) -> None:
        hop, self._jump = self._jump, None
        if hop is not None:
            hop.close()

    def _active_transport(self) -> paramiko.Transport:
        self.connect()
        assert self._transport is not None
        return self._transport

    # -- commands --------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, stdin: bytes = b"", timeout: float) -> CommandResult:
        """Run ``argv`` on the member, feed it ``stdin``, and return its exit status and output.

        A non-zero exit status is returned, not raised: what it means is the caller's call. Raises
        `RemoteTimeoutError` if the whole call (channel open, exec, stdin, output, exit status)
        takes longer than ``timeout`` seconds; the channel is closed then.
        """
        argv = tuple(argv)
        command = command_line(argv)
        started = time.monotonic()
        deadline = started + timeout
        transport = self._active_transport()
        try:
            channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.001))
        except paramiko.SSHException as error:
            self._raise_if_late(started, timeout, argv)
            self.close()
            raise TransportError(f"{self.where}: cannot open a session channel: {error}") from None
        try:
            self._exec(channel, command, started, deadline, argv)
            stdout, stderr = self._exchange(channel, stdin, started, deadline, argv)
            status = channel.exit_status
            if status == -1 and not transport.is_active():
                # The channel closed because the connection died, not because the command ended.
                self.close()
                raise TransportError(f"{self.where}: connection lost while running {argv[0]!r}")
        finally:
            channel.close()
            self._last_used = time.monotonic()
        result = CommandResult(argv=argv, exit_status=status, stdout=stdout, stderr=stderr)
        self._log.info(
            "ssh.run",
            argv=list(argv),
            exit_status=status,
            duration=round(time.monotonic() - started, 3),
            stdout_bytes=len(stdout),
            stderr_bytes=len(stderr),
        )
        return result

    def _exec(
        self,
        channel: paramiko.Channel,
        command: str,
        started: float,
        deadline: float,
        argv: tuple[str, ...],
    ) -> None:
        # paramiko waits for the server's reply to "exec" without any timeout; closing the channel
        # from a timer is what wakes it up (the wait then raises "Channel closed").
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), channel.close)
        watchdog.daemon = True
        watchdog.start()
        try:
            channel.exec_command(command)
        except paramiko.SSHException as error:
            self._raise_if_late(started, deadline - started, argv)
            raise TransportError(
                f"{self.where}: the server refused to run {argv[0]!r}: {error}"
            ) from None
        finally:
            watchdog.cancel()

    def _exchange(
        self,
        channel: paramiko.Channel,
        stdin: bytes,
        started: float,
        deadline: float,
        argv: tuple[str, ...],
    ) -> tuple[bytes, bytes]:
        """Write stdin and drain stdout and stderr together until the command has finished.

        Reading both streams in one loop (and writing stdin only as the window allows) is what keeps
        a command that fills one stream, or that echoes its input, from deadlocking us.
        """
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        view = memoryview(stdin)
        sent = 0
        eof_sent = False
        readable = channel.fileno()
        while True:
            progressed = False
            if sent < len(view):
                if channel.send_ready():
                    sent += channel.send(bytes(view[sent : sent + _CHUNK]))
                    progressed = True
            elif not eof_sent:
                channel.shutdown_write()
                eof_sent = True
            while channel.recv_ready():
                stdout.append(channel.recv(_CHUNK * 2))
                progressed = True
            while channel.recv_stderr_ready():
                stderr.append(channel.recv_stderr(_CHUNK * 2))
                progressed = True
            if (
                channel.exit_status_ready()
                and (channel.eof_received or channel.closed)
                and not channel.recv_ready()
                and not channel.recv_stderr_ready()
            ):
                return b"".join(stdout), b"".join(stderr)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                channel.close()
                self._raise_timeout(started, argv)
            if not progressed:
                # The channel's pipe wakes us on new output; while stdin waits for window space
                # (which has no wake-up), poll briefly instead.
                wait = 0.01 if sent < len(view) else 0.25
                select.select([readable], [], [], min(remaining, wait))

    def _raise_if_late(self, started: float, timeout: float, argv: tuple[str, ...]) -> None:
        if time.monotonic() - started >= timeout:
            self._raise_timeout(started, argv)

    def _raise_timeout(self, started: float, argv: tuple[str, ...]) -> NoReturn:
        elapsed = time.monotonic() - started
        self._log.warning("ssh.run.timeout", argv=list(argv), duration=round(elapsed, 3))
        raise RemoteTimeoutError(
            f"{self.where}: remote command {argv[0]!r} timed out after {elapsed:.1f}s; "
            "its channel was closed"
        )

    # -- files -----------------------------------------------------------------------------------

    def _sftp_client(self, deadline: float) -> paramiko.SFTPClient:
        """Return the SFTP client, starting it (within ``deadline``) on first use."""
        transport = self._active_transport()
        if self._sftp is not None:
            return self._sftp
        started = time.monotonic()
        # SFTPClient.from_transport would wait up to paramiko's one-hour channel timeout, and
        # the subsystem request without any: open the channel ourselves, under the deadline.
        try:
            channel = transport.open_session(timeout=max(deadline - started, 0.001))
        except paramiko.SSHException as error:
            raise TransportError(f"{self.where}: cannot open an SFTP channel: {error}") from None
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), channel.close)
        watchdog.daemon = True
        watchdog.start()
        try:
            channel.settimeout(max(deadline - time.monotonic(), 0.001))
            channel.invoke_subsystem("sftp")
            self._sftp = paramiko.SFTPClient(channel)
        except (paramiko.SSHException, OSError, EOFError) as error:
            channel.close()
            if time.monotonic() >= deadline:
                raise RemoteTimeoutError(
                    f"{self.where}: starting SFTP timed out after {time.monotonic() - started:.1f}s"
                ) from None
            raise TransportError(f"{self.where}: cannot start SFTP: {error}") from None
        finally:
            watchdog.cancel()
        return self._sftp

    def _sftp_call(
        self, what: str, deadline: float, call: Callable[[paramiko.SFTPClient], _T]
    ) -> _T:
        """Run one SFTP step with the channel timeout set to what is left of the deadline."""
        started = time.monotonic()
        sftp = self._sftp_client(deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RemoteTimeoutError(f"{self.where}: {what} ran out of time")
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(remaining)
        try:
            result = call(sftp)
        except TimeoutError:
            # The SFTP session is in an unknown state after a timeout: drop it, a new one is opened
            # on next use.
            self._drop_sftp()
            raise RemoteTimeoutError(
                f"{self.where}: {what} timed out after {time.monotonic() - started:.1f}s"
            ) from None
        except (paramiko.SSHException, EOFError) as error:
            self._drop_sftp()
            raise TransportError(f"{self.where}: {what} failed: {error}") from None
        self._last_used = time.monotonic()
        return result

    def _drop_sftp(self) -> None:
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()

    def make_private_dir(self, parent: str, prefix: str, *, timeout: float = 30) -> str:
        """Create a new randomly named directory under ``parent``, mode 0700, and return its path.

        The name is unpredictable and creation fails if it exists, so nobody can plant it in
        advance; the mode is set explicitly and checked because the remote umask applies to mkdir.
        """
        path = f"{parent.rstrip('/')}/{prefix}{secrets.token_hex(8)}"
        deadline = time.monotonic() + timeout

        def create(sftp: paramiko.SFTPClient) -> paramiko.SFTPAttributes:
            sftp.mkdir(path, mode=0o700)
            sftp.chmod(path, 0o700)
            return sftp.lstat(path)

        try:
            attributes = self._sftp_call(f"creating directory {path}", deadline, create)
        except OSError as error:
            raise TransportError(
                f"{self.where}: cannot create private directory {path}: {error}"
            ) from None
        mode = attributes.st_mode or 0
        if not stat.S_ISDIR(mode) or stat.S_IMODE(mode) != 0o700:
            raise TransportError(
                f"{self.where}: directory {path} has mode {stat.S_IMODE(mode):04o}, expected 0700"
            )
        self._log.debug("ssh.mkdir", path=path)
        return path

    def chmod(self, remote: str, mode: int, *, timeout: float = 30) -> None:
        """Set the mode of a remote file."""
        deadline = time.monotonic() + timeout
        try:
            self._sftp_call(f"chmod {remote}", deadline, lambda sftp: sftp.chmod(remote, mode))
        except OSError as error:
            raise TransportError(f"{self.where}: cannot chmod {remote}: {error}") from None

    def remove_private_dir(self, path: str, *, timeout: float = 30) -> None:
        """Remove the files in ``path``, then the directory itself; a missing directory is fine.

        Done over SFTP file by file, never with ``rm -rf``: a wrong path can cost one directory of
        our own files at most. Subdirectories are not expected and are refused.
        """
        deadline = time.monotonic() + timeout

        def remove(sftp: paramiko.SFTPClient) -> int:
            try:
                entries = sftp.listdir_attr(path)
            except FileNotFoundError:
                return 0
            for entry in entries:
                if stat.S_ISDIR(entry.st_mode or 0):
                    raise TransportError(
                        f"{self.where}: {path} contains a directory {entry.filename!r}; "
                        "refusing to remove it"
                    )
                with contextlib.suppress(FileNotFoundError):
                    sftp.remove(f"{path}/{entry.filename}")
            with contextlib.suppress(FileNotFoundError):
                sftp.rmdir(path)
            return len(entries)

        try:
            removed = self._sftp_call(f"removing {path}", deadline, remove)
        except OSError as error:
            raise TransportError(f"{self.where}: cannot remove {path}: {error}") from None
        self._log.debug("ssh.rmdir", path=path, files=removed)

    def stale_private_dirs(
        self, parent: str, prefix: str, older_than: float, *, timeout: float = 30
    ) -> list[str]:
        """Our own work directories left behind by killed runs: ``parent/prefix*``, private
        (0700), owned by the login user and not modified for ``older_than`` seconds."""
        deadline = time.monotonic() + timeout
        base = parent.rstrip("/")

        def scan(sftp: paramiko.SFTPClient) -> list[str]:
            uid = sftp.stat(".").st_uid  # the login user's home directory is ours
            cutoff = time.time() - older_than
            return [
                f"{base}/{entry.filename}"
                for entry in sftp.listdir_attr(base)
                if entry.filename.startswith(prefix)
                and stat.S_ISDIR(entry.st_mode or 0)
                and stat.S_IMODE(entry.st_mode or 0) == 0o700
                and entry.st_uid == uid
                and (entry.st_mtime or 0) < cutoff
            ]

        try:
            return self._sftp_call(f"listing {base}", deadline, scan)
        except OSError as error:
            raise TransportError(f"{self.where}: cannot list {base}: {error}") from None

    def digest(self, remote: str, *, timeout: float) -> FileDigest:
        """Return the size and SHA-256 of a remote file, computed on the member itself."""
        # The path is passed as a positional parameter ("$1"), never pasted into the script.
        script = 'stat -c %s -- "$1" && sha256sum < "$1"'
        result = self.run(["sh", "-c", script, "mirrorsync-digest", remote], timeout=timeout)
        if result.exit_status != 0:
            raise TransferError(
                f"{self.where}: cannot compute the SHA-256 of {remote} "
                f"(exit {result.exit_status}): {result.stderr_tail()}"
            )
        return parse_digest_output(result.stdout, where=f"{self.where}: digest of {remote}")

    def upload(self, local: Path, remote: str, *, timeout: float) -> FileDigest:
        """Copy a local file to the member (created 0600, never overwriting) and verify it.

        The remote file must not exist: it is opened with O_EXCL, so a file or symlink planted at
        that path makes the upload fail instead of being followed. Its mode is set to 0600 through
        the open handle before any data is written.
        """
        started = time.monotonic()
        deadline = started + timeout
        expected = local_digest(local)

        created = False

        def write(sftp: paramiko.SFTPClient) -> None:
            nonlocal created
            with local.open("rb") as source, sftp.open(remote, "wbx") as target:
                created = True  # only now is the remote file ours to remove on failure
                target.chmod(0o600)
                target.set_pipelined(True)
                while chunk := source.read(_CHUNK):
                    if time.monotonic() > deadline:
                        raise TimeoutError
                    target.write(chunk)

        try:
            try:
                self._sftp_call(f"upload of {local} to {remote}", deadline, write)
            except OSError as error:
                if not created:
                    raise TransferError(
                        f"{self.where}: cannot create {remote} ({error}); uploads never "
                        "overwrite, so the target must not exist and its directory must"
                    ) from None
                raise TransferError(
                    f"{self.where}: upload of {local} to {remote} failed: {error}"
                ) from None
            received = self.digest(remote, timeout=max(deadline - time.monotonic(), 0.001))
        except TransportError:
            if created:
                self._discard_remote(remote)
            raise
        if received != expected:
            # A retry must be able to upload again to the same path.
            self._discard_remote(remote)
            raise TransferError(
                f"{self.where}: upload of {local} to {remote} did not verify: sent "
                f"{expected.size} bytes sha256 {expected.sha256}, the member has "
                f"{received.size} bytes sha256 {received.sha256}"
            )
        self._log.info(
            "ssh.upload",
            local=str(local),
            remote=remote,
            size=expected.size,
            sha256=expected.sha256,
            duration=round(time.monotonic() - started, 3),
        )
        return expected

    def _discard_remote(self, remote: str) -> None:
        """Best effort: remove a partial or unverified upload so that a retry can start over."""
        with contextlib.suppress(Exception):
            self._sftp_call(
                f"removing {remote}", time.monotonic() + 5, lambda sftp: sftp.remove(remote)
            )

    def download(self, remote: str, local: Path, *, timeout: float) -> FileDigest:
        """Copy a remote file to ``local`` (mode 0600) and verify it against the member's digest.

        Data goes to a temporary file in the target directory first, so ``local`` only ever appears
        complete and verified.
        """
        started = time.monotonic()
        deadline = started + timeout
        descriptor, temporary_name = tempfile.mkstemp(
            dir=local.parent, prefix=f".{local.name}.", suffix=".part"
        )
        temporary = Path(temporary_name)
        try:
            with os.fdopen(descriptor, "wb") as target:

                def read(sftp: paramiko.SFTPClient) -> FileDigest:
                    # No prefetch: it hung against some servers (field note 10). Plain reads, each
                    # bounded by the channel timeout, checked against the deadline.
                    sha = hashlib.sha256()
                    size = 0
                    with sftp.open(remote, "rb") as source:
                        while chunk := source.read(_CHUNK):
                            if time.monotonic() > deadline:
                                raise TimeoutError
                            target.write(chunk)
                            sha.update(chunk)
                            size += len(chunk)
                    return FileDigest(size=size, sha256=sha.hexdigest())

                try:
                    received = self._sftp_call(f"download of {remote}", deadline, read)
                except OSError as error:
                    raise TransferError(
                        f"{self.where}: download of {remote} failed: {error}"
                    ) from None
                target.flush()
                os.fsync(target.fileno())
            expected = self.digest(remote, timeout=max(deadline - time.monotonic(), 0.001))
            if received != expected:
                raise TransferError(
                    f"{self.where}: download of {remote} did not verify: the member has "
                    f"{expected.size} bytes sha256 {expected.sha256}, received "
                    f"{received.size} bytes sha256 {received.sha256}"
                )
            os.replace(temporary, local)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        self._log.info(
            "ssh.download",
            remote=remote,
            local=str(local),
            size=received.size,
            sha256=received.sha256,
            duration=round(time.monotonic() - started, 3),
        )
        return received


_DIGEST_OUTPUT = re.compile(rb"\A([0-9]+)\n([0-9a-f]{64})  -\n\Z")


def parse_digest_output(output: bytes, *, where: str) -> FileDigest:
    """Parse ``stat -c %s`` + ``sha256sum < file`` output; anything unexpected is an error."""
    match = _DIGEST_OUTPUT.match(output)
    if match is None:
        shown = output[:200].decode("utf-8", errors="replace")
        raise TransferError(f"{where}: unexpected output from stat/sha256sum: {shown!r}")
    return FileDigest(size=int(match.group(1)), sha256=match.group(2).decode("ascii"))


__all__ = [
    "CommandResult",
    "Endpoint",
    "FileDigest",
    "ScannedHostKey",
    "SshConnection",
    "SshSettings",
    "command_line",
    "fingerprint",
    "load_identity",
    "local_digest",
    "parse_digest_output",
]

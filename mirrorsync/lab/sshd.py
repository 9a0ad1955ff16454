"""Real OpenSSH sshd instances on loopback, for the lab and the SSH tests.

Everything is explicit: each sshd gets its own config file (``-f``), host key, authorized_keys file,
pid file and log file inside a directory we own. Nothing reads or writes ``~/.ssh`` or
``/etc/ssh``. The login user is the current user; as root, sshd also needs its privilege
separation directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mirrorsync.errors import MirrorsyncError

SSHD = Path("/usr/sbin/sshd")
"""Called by absolute path: sshd refuses to re-execute itself otherwise, and PATH is not trusted."""

PRIVSEP_DIR = Path("/run/sshd")

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0

# sshd processes started by this Python process, so we can reap them (no zombies, no
# "subprocess still running" warnings) when they are stopped from here.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LabError(MirrorsyncError):
    """The lab could not be set up or torn down."""


@dataclass(frozen=True)
class SshdInstance:
    """One running sshd."""

    name: str
    address: str
    port: int
    pid: int
    directory: Path
    host_key: Path
    config: Path
    log: Path


def sshd_available() -> bool:
    """Whether the OpenSSH server binary is installed where the lab expects it."""
    return SSHD.is_file() and os.access(SSHD, os.X_OK)


def write_private_key(path: Path, key_type: str = "ed25519", *, passphrase: bytes = b"") -> str:
    """Write a new key pair, ``path`` (0600) and ``path.pub``; return the public key line.

    ``key_type`` is ``ed25519``, ``ecdsa`` (P-256) or ``rsa`` (3072 bits).
    """
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif key_type == "ecdsa":
        private = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"unsupported key type {key_type!r}")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    data = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    )
    # Created 0600 from the start: sshd and ssh refuse keys readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = public.decode("ascii")
    Path(f"{path}.pub").write_text(f"{line} mirrorsync-lab\n", encoding="ascii")
    return line


def free_port(address: str) -> int:
    """Return a TCP port that is free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def _check_config_value(value: str) -> str:
    # sshd_config has its own quoting and expands %-tokens in some keywords; refuse what we would
    # have to escape rather than escape it wrongly.
    if any(character in value for character in ' \t\n"%\\#'):
        raise LabError(
            f"lab paths must not contain spaces, quotes, '%', '#' or backslashes: {value!r}"
        )
    return value


def sshd_config_text(
    *,
    address: str,
    port: int,
    host_keys: list[Path],
    pid_file: Path,
    authorized_keys: Path,
    user: str,
    environment: Mapping[str, str],
    sftp_umask: str = "",
    allow_tcp_forwarding: bool = False,
) -> str:
    """Return an sshd_config for a loopback-only, key-only sshd serving exactly one user.

    ``allow_tcp_forwarding`` makes it a jump host (``direct-tcpip`` channels allowed).
    """
    lines = [
        "# Written by mirrorsync's lab: a loopback-only sshd for one simulated IRIS member.",
        f"ListenAddress {address}:{port}",
        *(f"HostKey {_check_config_value(str(key))}" for key in host_keys),
        f"PidFile {_check_config_value(str(pid_file))}",
        f"AuthorizedKeysFile {_check_config_value(str(authorized_keys))}",
        f"AllowUsers {user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "UsePAM no",
        # Lab directories live under /tmp or pytest's tmp_path, whose parents sshd would reject.
        "StrictModes no",
        # CI runs as root; key-only login keeps that as safe as a lab needs.
        "PermitRootLogin prohibit-password",
        # Only a lab jump host (bastion) forwards; members never do.
        f"AllowTcpForwarding {'yes' if allow_tcp_forwarding else 'no'}",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitUserEnvironment no",
        "PrintMotd no",
        "UseDNS no",
        "LoginGraceTime 20",
        "MaxStartups 50:30:100",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp" + (f" -u {sftp_umask}" if sftp_umask else ""),
    ]
    if environment:
        # SetEnv applies to every session (exec included) and overrides sshd's default PATH; this
        # is how only this member's sessions find its `iris` wrapper.
        pairs = " ".join(
            f"{name}={_check_config_value(value)}" for name, value in environment.items()
        )
        lines.append(f"SetEnv {pairs}")
    return "\n".join(lines) + "\n"


def _ensure_privsep_dir() -> None:
    # Root's sshd chroots its pre-auth child into /run/sshd and refuses to start without it.
    # A non-root sshd does not use it.
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def start_sshd(
    directory: Path,
    *,
    name: str,
    address: str,
    authorized_keys: Path,
    user: str,
    environment: Mapping[str, str] | None = None,
    host_key_types: tuple[str, ...] = ("ed25519",),
    port: int | None = None,
    sftp_umask: str = "",
    allow_tcp_forwarding: bool = False,
) -> SshdInstance:
    """Start one sshd whose files live in ``directory`` and wait until it accepts connections.

    Host keys are generated on first use (``directory/ssh_host_<type>_key``) and reused after.
    On failure everything started is stopped and `LabError` shows the tail of sshd's log.
    ``sftp_umask`` forces a umask on SFTP-created files (tests use it to prove modes are explicit).
    """
    if not sshd_available():
        raise LabError(
            f"{SSHD} is missing: install the OpenSSH server (apt-get install openssh-server)"
        )
    _ensure_privsep_dir()
    directory.mkdir(parents=True, exist_ok=True)
    host_keys = []
    for key_type in host_key_types:
        key_path = directory / f"ssh_host_{key_type}_key"
        if not key_path.exists():
            write_private_key(key_path, key_type)
        host_keys.append(key_path)
    config = directory / "sshd_config"
    pid_file = directory / "sshd.pid"
    log_file = directory / "sshd.log"
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(address)
        config.write_text(
            sshd_config_text(
                address=address,
                port=chosen,
                host_keys=host_keys,
                pid_file=pid_file,
                authorized_keys=authorized_keys,
                user=user,
                environment=environment or {},
                sftp_umask=sftp_umask,
                allow_tcp_forwarding=allow_tcp_forwarding,
            ),
            encoding="utf-8",
        )
        log_offset = log_file.stat().st_size if log_file.exists() else 0
        process = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(config), "-E", str(log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own session: a Ctrl-C aimed at `mirrorsync lab up` must not kill the lab.
            start_new_session=True,
            close_fds=True,
        )
        _CHILDREN[process.pid] = process
        error = _wait_until_listening(process, address, chosen)
        if error is None:
            if process.stderr is not None:
                process.stderr.close()
            return SshdInstance(
                name=name,
                address=address,
                port=chosen,
                pid=process.pid,
                directory=directory,
                host_key=host_keys[0],
                config=config,
                log=log_file,
            )
        stop_sshd(process.pid, config)
        tail = _log_tail(log_file, log_offset, process)
        if attempt + 1 < attempts and "Address already in use" in tail:
            continue  # another process took the free port between our probe and sshd's bind
        raise LabError(f"sshd for {name} on {address}:{chosen} did not start: {error}\n{tail}")
    raise AssertionError("unreachable")  # pragma: no cover


def _wait_until_listening(process: subprocess.Popen[bytes], address: str, port: int) -> str | None:
    """Poll until sshd accepts a TCP connection; return why not if it dies or takes too long."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"sshd exited with status {process.returncode}"
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return None
        time.sleep(0.01)
    return f"sshd did not accept connections within {_START_TIMEOUT:g}s"


def _log_tail(log_file: Path, offset: int, process: subprocess.Popen[bytes]) -> str:
    text = ""
    with contextlib.suppress(OSError), log_file.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", errors="replace")
    if process.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            text += process.stderr.read().decode("utf-8", errors="replace")
            process.stderr.close()
    lines = text.strip().splitlines()[-15:]
    return "sshd log (last lines):\n" + "\n".join(f"  {line}" for line in lines)


def is_running_sshd(pid: int, config: Path) -> bool:
    """Whether ``pid`` is still the sshd started with ``config`` (guards against pid reuse)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # sshd rewrites its process title ("sshd: /usr/sbin/sshd -D -f CONFIG ... [listener] ..."),
    # so its arguments may be one space-separated string rather than NUL-separated ones.
    words = raw.replace(b"\0", b" ").split()
    return b"sshd" in raw and str(config).encode() in words and not _has_exited(pid)


def _has_exited(pid: int) -> bool:
    process = _CHILDREN.get(pid)
    if process is not None:
        if process.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    # A zombie has exited; whoever is its parent will reap it.
    return state in ("Z", "X")


def stop_sshd(pid: int, config: Path) -> None:
    """Stop the sshd ``pid`` if it is still the one started with ``config``; wait for it to exit.

    Idempotent: an sshd already gone is fine.
    """
    if not is_running_sshd(pid, config) and pid not in _CHILDREN:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    killed = False
    while not _has_exited(pid):
        if time.monotonic() > deadline:
            if killed:
                raise LabError(f"sshd (pid {pid}) did not exit after SIGTERM and SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + _STOP_TIMEOUT
        time.sleep(0.01)

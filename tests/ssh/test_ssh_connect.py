"""Connecting: pinned host keys, authentication, and which phase failed, against a real sshd."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from structlog.testing import capture_logs

from mirrorsync.errors import AuthenticationError, HostKeyError, TransportError
from mirrorsync.lab.sshd import stop_sshd, write_private_key
from mirrorsync.lab.testing import SshdServer
from mirrorsync.ssh import Endpoint, SshConnection, fingerprint

SshdFactory = Callable[..., SshdServer]


def server_fingerprint(server: SshdServer, key_type: str = "ed25519") -> str:
    path = server.instance.directory / f"ssh_host_{key_type}_key"
    return fingerprint(paramiko.PKey.from_path(path))


def test_good_key_connects_and_runs(sshd: SshdServer) -> None:
    """A pinned host key and an authorized client key give a working connection."""
    with sshd.connection() as connection:
        result = connection.run(["echo", "hello"], timeout=10)
    assert (0, b"hello\n", b"") == (result.exit_status, result.stdout, result.stderr)


def test_unknown_host_is_refused_with_fingerprint_and_pin_hint(sshd: SshdServer) -> None:
    """A host missing from known_hosts is refused; the message shows its key and how to pin it."""
    sshd.known_hosts.write_text(f"[127.0.0.99]:{sshd.port} {sshd.host_public_key()}\n")
    with pytest.raises(HostKeyError) as caught, sshd.connection() as connection:
        connection.connect()
    message = str(caught.value)
    assert "iris-test" in message
    assert f"127.0.0.11:{sshd.port}" in message
    assert f"ssh-ed25519 {server_fingerprint(sshd)}" in message
    assert f"[127.0.0.11]:{sshd.port} {sshd.host_public_key()}" in message
    assert caught.value.transient is False


def test_changed_host_key_is_refused_with_both_fingerprints(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A host whose key differs from the pinned one is refused, naming expected and received."""
    other = tmp_path / "other_key"
    write_private_key(other)
    pinned = paramiko.PKey.from_path(other)
    sshd.known_hosts.write_text(
        f"[127.0.0.11]:{sshd.port} {pinned.get_name()} {pinned.get_base64()}\n"
    )
    with pytest.raises(HostKeyError) as caught, sshd.connection() as connection:
        connection.connect()
    message = str(caught.value)
    assert "CHANGED" in message
    assert fingerprint(pinned) in message
    assert server_fingerprint(sshd) in message


def test_hashed_known_hosts_entry_is_accepted(sshd: SshdServer) -> None:
    """A hashed known_hosts entry (HashKnownHosts yes) pins the host like a clear one."""
    hashed = paramiko.HostKeys.hash_host(f"[127.0.0.11]:{sshd.port}")
    sshd.known_hosts.write_text(f"{hashed} {sshd.host_public_key()}\n")
    with sshd.connection() as connection:
        assert 0 == connection.run(["true"], timeout=10).exit_status


def test_revoked_key_is_refused(sshd: SshdServer) -> None:
    """A key marked @revoked is refused even when it is also pinned."""
    line = f"[127.0.0.11]:{sshd.port} {sshd.host_public_key()}"
    sshd.known_hosts.write_text(f"{line}\n@revoked {line}\n")
    with pytest.raises(HostKeyError, match="revoked"), sshd.connection() as connection:
        connection.connect()


@pytest.mark.parametrize(
    ("key_type", "algorithm"), [("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "ssh-rsa")]
)
def test_pinned_key_type_is_negotiated_first(
    sshd_factory: SshdFactory, key_type: str, algorithm: str
) -> None:
    """With only an ECDSA or RSA key pinned, that type wins over the higher-ranked ed25519."""
    server = sshd_factory(host_key_types=("ed25519", key_type), pin=False)
    server.known_hosts.write_text(
        f"[127.0.0.11]:{server.port} {server.host_public_key(key_type)}\n"
    )
    with capture_logs() as logs, server.connection() as connection:
        connection.connect()
    connects = [entry for entry in logs if entry["event"] == "ssh.connect"]
    assert [f"{algorithm} {server_fingerprint(server, key_type)}"] == [
        entry["host_key"] for entry in connects
    ]


def test_missing_known_hosts_file_is_a_host_key_error(sshd: SshdServer, tmp_path: Path) -> None:
    """A known_hosts path that does not exist is refused, never replaced by ~/.ssh/known_hosts."""
    with (
        pytest.raises(HostKeyError, match="does not exist"),
        SshConnection(
            sshd.endpoint(), sshd.settings(known_hosts=tmp_path / "nope"), name="iris-test"
        ) as connection,
    ):
        connection.connect()


def test_personal_ssh_directory_is_never_read(sshd: SshdServer, tmp_path: Path) -> None:
    """A ~/.ssh/known_hosts that would trust the host is ignored: only the configured one counts."""
    home_ssh = Path.home() / ".ssh"
    home_ssh.mkdir()
    (home_ssh / "known_hosts").write_text(f"[127.0.0.11]:{sshd.port} {sshd.host_public_key()}\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with (
        pytest.raises(HostKeyError, match="not in known_hosts"),
        SshConnection(sshd.endpoint(), sshd.settings(known_hosts=empty), name="m") as connection,
    ):
        connection.connect()


def test_refused_client_key_is_an_authentication_error(sshd: SshdServer, tmp_path: Path) -> None:
    """A client key the server does not accept is reported as authentication, not retried."""
    stranger = tmp_path / "stranger"
    write_private_key(stranger)
    with (
        pytest.raises(AuthenticationError, match="refused") as caught,
        sshd.connection(identity=stranger) as connection,
    ):
        connection.connect()
    assert caught.value.transient is False
    assert "iris-test" in str(caught.value)


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_identity_key_types(sshd: SshdServer, tmp_path: Path, key_type: str) -> None:
    """ed25519, ECDSA and RSA client keys all authenticate."""
    identity = tmp_path / f"id_{key_type}"
    line = write_private_key(identity, key_type)
    with sshd.authorized_keys.open("a") as handle:
        handle.write(line + "\n")
    with sshd.connection(identity=identity) as connection:
        assert b"ok\n" == connection.run(["echo", "ok"], timeout=10).stdout


def test_encrypted_identity_is_explained(sshd: SshdServer, tmp_path: Path) -> None:
    """A passphrase-protected identity file gets a clear message, not a paramiko traceback."""
    identity = tmp_path / "id_locked"
    write_private_key(identity, passphrase=b"correct horse")
    with (
        pytest.raises(AuthenticationError, match="encrypted") as caught,
        sshd.connection(identity=identity) as connection,
    ):
        connection.connect()
    assert "correct horse" not in str(caught.value)


def test_missing_identity_is_explained(sshd: SshdServer, tmp_path: Path) -> None:
    """A missing identity file is named in the error."""
    missing = tmp_path / "id_missing"
    with (
        pytest.raises(AuthenticationError, match="does not exist"),
        sshd.connection(identity=missing) as connection,
    ):
        connection.connect()


def test_connection_refused_is_transient(sshd: SshdServer) -> None:
    """With sshd down, connecting fails in the TCP phase with a transient TransportError."""
    stop_sshd(sshd.instance.pid, sshd.instance.config)
    with pytest.raises(TransportError) as caught, sshd.connection() as connection:
        connection.connect()
    assert type(caught.value) is TransportError
    assert caught.value.transient is True
    assert "TCP connect failed" in str(caught.value)
    assert f"127.0.0.11:{sshd.port}" in str(caught.value)


@pytest.fixture
def fake_server() -> Iterator[tuple[socket.socket, list[bytes]]]:
    """A loopback TCP listener; each accepted client gets the queued bytes, then is held open."""
    listener = socket.create_server(("127.0.0.1", 0))
    replies: list[bytes] = []
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            accepted.append(client)
            for reply in replies:
                client.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener, replies
    listener.close()
    for client in accepted:
        client.close()


def test_silent_server_fails_in_banner_phase(
    sshd: SshdServer, fake_server: tuple[socket.socket, list[bytes]]
) -> None:
    """A server that accepts TCP but never says hello fails as a banner timeout, quickly."""
    listener, _ = fake_server
    port = listener.getsockname()[1]
    connection = SshConnection(
        Endpoint("127.0.0.1", port, sshd.user, sshd.identity),
        sshd.settings(banner_timeout=0.5),
        name="silent",
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match="banner") as caught, connection:
        connection.connect()
    assert time.monotonic() - started < 3
    assert caught.value.transient is True


def test_garbled_server_fails_in_key_exchange_phase(
    sshd: SshdServer, fake_server: tuple[socket.socket, list[bytes]]
) -> None:
    """A server that sends a banner and then nonsense fails in the key exchange phase."""
    listener, replies = fake_server
    replies.append(b"SSH-2.0-Fake_1.0\r\n" + b"\x00\x00\x00\x0c\x0a\x14" + b"garbage" * 20)
    port = listener.getsockname()[1]
    connection = SshConnection(
        Endpoint("127.0.0.1", port, sshd.user, sshd.identity),
        sshd.settings(banner_timeout=1),
        name="garbled",
    )
    with pytest.raises(TransportError, match="key exchange") as caught, connection:
        connection.connect()
    assert caught.value.transient is True


def test_scan_host_key_shows_what_to_pin(sshd: SshdServer) -> None:
    """scan_host_key reports the presented key and its known_hosts line without trusting it."""
    sshd.known_hosts.write_text("")
    with sshd.connection() as connection:
        scanned = connection.scan_host_key()
    assert ("ssh-ed25519", server_fingerprint(sshd)) == (scanned.key_type, scanned.fingerprint)
    assert f"[127.0.0.11]:{sshd.port} {sshd.host_public_key()}" == scanned.known_hosts_line
    assert "" == sshd.known_hosts.read_text()


def test_idle_connection_is_reopened(sshd: SshdServer) -> None:
    """A connection unused for longer than the idle limit is replaced, not trusted (note 13)."""
    with capture_logs() as logs, sshd.connection() as connection:
        connection.run(["true"], timeout=10)
        connection._last_used -= 3600
        connection.run(["true"], timeout=10)
    assert 2 == sum(1 for entry in logs if entry["event"] == "ssh.connect")

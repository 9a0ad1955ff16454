"""SFTP transfers: private modes, verification by remote SHA-256, cleanup."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mirrorsync.errors import RemoteTimeoutError, TransferError
from mirrorsync.lab.testing import SshdServer
from mirrorsync.ssh import FileDigest, SshConnection, local_digest
from mirrorsync.ssh.transport import parse_digest_output

SshdFactory = Callable[..., SshdServer]

# The sshd under test runs on this machine, so "remote" paths can also be inspected locally.


def mode_of(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def payload(size: int = 300_000) -> bytes:
    line = b"<Node><Sub>client</Sub><Data>\xe2\x9c\x93</Data></Node>\n"
    return (line * (size // len(line) + 1))[:size]


def test_round_trip_with_private_modes(sshd: SshdServer, tmp_path: Path) -> None:
    """Upload then download gives identical bytes; dir 0700, remote and local files 0600."""
    source = tmp_path / "export.xml"
    source.write_bytes(payload())
    with sshd.connection() as connection:
        directory = connection.make_private_dir(str(tmp_path), "mirrorsync-")
        remote = f"{directory}/export.xml"
        uploaded = connection.upload(source, remote, timeout=30)
        assert 0o700 == mode_of(directory)
        assert 0o600 == mode_of(remote)
        target = tmp_path / "back.xml"
        downloaded = connection.download(remote, target, timeout=30)
        assert 0o600 == mode_of(target)
        assert source.read_bytes() == target.read_bytes()
        assert local_digest(source) == uploaded == downloaded
        connection.remove_private_dir(directory)
    assert not Path(directory).exists()
    assert ["back.xml", "export.xml"] == sorted(p.name for p in tmp_path.iterdir() if p.is_file())


def test_modes_are_explicit_whatever_the_remote_umask(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """With an SFTP umask of 0277 the directory is still 0700 and the file 0600."""
    server = sshd_factory(sftp_umask="0277")
    source = tmp_path / "a.xml"
    source.write_bytes(b"data\n")
    with server.connection() as connection:
        directory = connection.make_private_dir(str(tmp_path), "ms-")
        connection.upload(source, f"{directory}/a.xml", timeout=30)
        assert (0o700, 0o600) == (mode_of(directory), mode_of(f"{directory}/a.xml"))


def test_private_dir_names_are_random(sshd: SshdServer, tmp_path: Path) -> None:
    """Two private directories with the same prefix get different unguessable names."""
    with sshd.connection() as connection:
        first = connection.make_private_dir(str(tmp_path), "ms-")
        second = connection.make_private_dir(str(tmp_path), "ms-")
    assert first != second
    assert len(Path(first).name) == len("ms-") + 16


def test_upload_never_overwrites_or_follows_a_planted_file(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """An existing file or symlink at the target makes the upload fail; its target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    planted = tmp_path / "planted.xml"
    planted.symlink_to(victim)
    source = tmp_path / "source.xml"
    source.write_text("new")
    with sshd.connection() as connection, pytest.raises(TransferError, match="never overwrite"):
        connection.upload(source, str(planted), timeout=30)
    assert "keep me" == victim.read_text()
    assert planted.is_symlink(), "a file we did not create is never removed"


def test_digest_is_computed_remotely(sshd: SshdServer, tmp_path: Path) -> None:
    """digest() returns the size and SHA-256 of the remote file."""
    data = payload(12345)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    with sshd.connection() as connection:
        digest = connection.digest(str(path), timeout=10)
    assert FileDigest(12345, hashlib.sha256(data).hexdigest()) == digest


def test_digest_of_missing_file_is_a_transfer_error(sshd: SshdServer, tmp_path: Path) -> None:
    """A missing remote file gives a TransferError naming it, not a parse error."""
    missing = str(tmp_path / "no such file")
    with (
        sshd.connection() as connection,
        pytest.raises(TransferError, match="cannot compute") as caught,
    ):
        connection.digest(missing, timeout=10)
    assert missing in str(caught.value)


@pytest.mark.parametrize(
    "output",
    [
        b"",
        b"12\n",
        b"12\n" + b"a" * 64 + b"  -\nextra\n",
        b"12\n" + b"A" * 64 + b"  -\n",
        b"x12\n" + b"a" * 64 + b"  -\n",
        b"12\n" + b"a" * 63 + b"  -\n",
        b"12\n" + b"a" * 64 + b"  file\n",
    ],
)
def test_digest_output_is_parsed_strictly(output: bytes) -> None:
    """Anything but exactly '<size>\\n<64 lowercase hex>  -\\n' is refused."""
    with pytest.raises(TransferError, match="unexpected output"):
        parse_digest_output(output, where="member m")


class CorruptingConnection(SshConnection):
    """Appends a byte to the remote file just before it is digested: a transfer gone wrong."""

    def digest(self, remote: str, *, timeout: float) -> FileDigest:
        with Path(remote).open("ab") as handle:
            handle.write(b"!")
        return super().digest(remote, timeout=timeout)


def test_upload_detects_a_corrupted_remote_file(sshd: SshdServer, tmp_path: Path) -> None:
    """If the remote copy differs from what was sent, upload raises TransferError with both."""
    source = tmp_path / "s.xml"
    source.write_bytes(b"abc")
    connection = CorruptingConnection(sshd.endpoint(), sshd.settings(), name="iris-test")
    with connection:
        directory = connection.make_private_dir(str(tmp_path), "ms-")
        with pytest.raises(TransferError, match="did not verify") as caught:
            connection.upload(source, f"{directory}/s.xml", timeout=30)
    assert hashlib.sha256(b"abc").hexdigest() in str(caught.value)
    assert hashlib.sha256(b"abc!").hexdigest() in str(caught.value)
    assert not Path(f"{directory}/s.xml").exists(), "an unverified upload must not stay behind"


def test_download_detects_a_mismatch_and_leaves_nothing(sshd: SshdServer, tmp_path: Path) -> None:
    """If the member's digest differs from the bytes received, no local file is left behind."""
    remote = tmp_path / "remote.xml"
    remote.write_bytes(b"abc")
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    connection = CorruptingConnection(sshd.endpoint(), sshd.settings(), name="iris-test")
    with connection, pytest.raises(TransferError, match="did not verify"):
        connection.download(str(remote), local_dir / "x.xml", timeout=30)
    assert [] == list(local_dir.iterdir())


def test_remove_private_dir_tolerates_a_missing_directory(sshd: SshdServer, tmp_path: Path) -> None:
    """Removing a directory that is already gone is not an error."""
    with sshd.connection() as connection:
        directory = connection.make_private_dir(str(tmp_path), "ms-")
        connection.remove_private_dir(directory)
        connection.remove_private_dir(directory)
    assert not Path(directory).exists()


def test_remove_private_dir_refuses_subdirectories(sshd: SshdServer, tmp_path: Path) -> None:
    """A subdirectory is never expected in a private dir, so removal stops instead of recursing."""
    with sshd.connection() as connection:
        directory = connection.make_private_dir(str(tmp_path), "ms-")
        (Path(directory) / "nested").mkdir()
        with pytest.raises(Exception, match="refusing"):
            connection.remove_private_dir(directory)
    assert (Path(directory) / "nested").is_dir()


def test_chmod_sets_the_remote_mode(sshd: SshdServer, tmp_path: Path) -> None:
    """chmod() changes the mode of a remote file."""
    path = tmp_path / "f"
    path.write_text("x")
    with sshd.connection() as connection:
        connection.chmod(str(path), 0o640)
    assert 0o640 == mode_of(path)


def test_transfer_past_its_deadline_times_out(sshd: SshdServer, tmp_path: Path) -> None:
    """An upload that cannot finish within its deadline raises RemoteTimeoutError promptly."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * 1024 * 1024))
    with sshd.connection() as connection:
        directory = connection.make_private_dir(str(tmp_path), "ms-")
        started = time.monotonic()
        with pytest.raises(RemoteTimeoutError, match="timed out"):
            connection.upload(big, f"{directory}/big.bin", timeout=0.2)
        assert time.monotonic() - started < 3
        assert not Path(f"{directory}/big.bin").exists(), "a partial upload must not stay behind"
        # The SFTP session is replaced and the connection stays usable.
        small = tmp_path / "small.bin"
        small.write_bytes(b"ok")
        assert 2 == connection.upload(small, f"{directory}/small.bin", timeout=30).size

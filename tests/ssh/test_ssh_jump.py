"""Jump hosts: a real second sshd as the bastion, host keys checked on both hops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mirrorsync.errors import HostKeyError, TransportError
from mirrorsync.lab.testing import SshdServer
from mirrorsync.ssh import Endpoint, SshConnection

SshdFactory = Callable[..., SshdServer]


def _pair(sshd_factory: SshdFactory, *, forwarding: bool = True) -> tuple[SshdServer, SshdServer]:
    """A member sshd and a bastion sshd, both pinned in the member's known_hosts file."""
    member = sshd_factory()
    bastion = sshd_factory(address="127.0.0.12", allow_tcp_forwarding=forwarding)
    pinned = member.known_hosts.read_text() + bastion.known_hosts.read_text()
    member.known_hosts.write_text(pinned, encoding="ascii")
    return member, bastion


def _via(member: SshdServer, bastion: SshdServer, known_hosts: Path | None = None) -> SshConnection:
    """A connection to ``member`` tunnelled through ``bastion``."""
    jump = Endpoint(bastion.host, bastion.port, bastion.user, bastion.identity)
    endpoint = Endpoint(member.host, member.port, member.user, member.identity, jump=jump)
    settings = member.settings(known_hosts=known_hosts or member.known_hosts)
    return SshConnection(endpoint, settings, name="iris-test")


def test_command_and_transfer_through_the_jump_host(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """Commands and verified SFTP uploads work through a bastion, which logs our login."""
    member, bastion = _pair(sshd_factory)
    local = tmp_path / "payload.bin"
    local.write_bytes(bytes(range(256)) * 64)
    with _via(member, bastion) as connection:
        result = connection.run(["echo", "through"], timeout=10)
        remote = connection.make_private_dir(str(tmp_path), "jump-")
        digest = connection.upload(local, f"{remote}/payload.bin", timeout=10)
        connection.remove_private_dir(remote)
    bastion_log = bastion.instance.log.read_text(encoding="utf-8", errors="replace")
    assert (0, b"through\n", 16384) == (result.exit_status, result.stdout, digest.size)
    assert "Accepted publickey" in bastion_log


def test_bastion_without_forwarding_names_the_jump_hop(sshd_factory: SshdFactory) -> None:
    """A bastion that refuses TCP forwarding is reported as the jump host refusing a tunnel."""
    member, bastion = _pair(sshd_factory, forwarding=False)
    with pytest.raises(TransportError) as caught, _via(member, bastion) as connection:
        connection.connect()
    message = str(caught.value)
    assert f"jump host {bastion.host}:{bastion.port} refused a tunnel" in message
    assert f"{member.host}:{member.port}" in message


def test_unpinned_bastion_is_refused(sshd_factory: SshdFactory) -> None:
    """The bastion's own host key must be pinned: an unknown one stops before any tunnel."""
    member, bastion = _pair(sshd_factory)
    only_member = member.known_hosts.read_text().splitlines()[0] + "\n"
    member.known_hosts.write_text(only_member, encoding="ascii")
    with pytest.raises(HostKeyError) as caught, _via(member, bastion) as connection:
        connection.connect()
    assert f"{bastion.host}:{bastion.port}" in str(caught.value)
    assert "jump host" in str(caught.value)


def test_member_key_is_checked_behind_the_bastion(sshd_factory: SshdFactory) -> None:
    """Behind a trusted bastion, a member whose key is not pinned is still refused."""
    member, bastion = _pair(sshd_factory)
    only_bastion = member.known_hosts.read_text().splitlines()[1] + "\n"
    member.known_hosts.write_text(only_bastion, encoding="ascii")
    with pytest.raises(HostKeyError) as caught, _via(member, bastion) as connection:
        connection.connect()
    assert f"member iris-test ({member.host}:{member.port}) is not in known_hosts" in str(
        caught.value
    )


def test_scan_through_the_bastion_reports_the_member_key(sshd_factory: SshdFactory) -> None:
    """scan_host_key through a jump host returns the member's key, not the bastion's."""
    member, bastion = _pair(sshd_factory)
    scanned = _via(member, bastion).scan_host_key()
    expected = f"[{member.host}]:{member.port} {member.host_public_key()}"
    assert expected == scanned.known_hosts_line

"""From configuration to SSH endpoints: where each member (and its jump host) is reached."""

from __future__ import annotations

from mirrorsync.config.model import Config, JumpHostConfig, MemberConfig
from mirrorsync.ssh.transport import Endpoint, SshConnection, SshSettings


def jump_endpoint(jump: JumpHostConfig) -> Endpoint:
    """The endpoint of a jump host (reached directly)."""
    return Endpoint(jump.host, jump.port, jump.user, jump.identity_file)


def member_endpoint(member: MemberConfig) -> Endpoint:
    """The endpoint of a member, tunnelled through its jump host when it has one."""
    jump = jump_endpoint(member.jump_host) if member.jump_host is not None else None
    return Endpoint(member.host, member.port, member.user, member.identity_file, jump=jump)


def ssh_settings(config: Config) -> SshSettings:
    """Timeouts and known_hosts shared by every connection."""
    return SshSettings(
        known_hosts=config.ssh.known_hosts,
        connect_timeout=config.ssh.connect_timeout,
        banner_timeout=config.ssh.banner_timeout,
        auth_timeout=config.ssh.auth_timeout,
    )


def member_connection(config: Config, member: MemberConfig) -> SshConnection:
    """A new (not yet connected) connection to ``member``."""
    return SshConnection(member_endpoint(member), ssh_settings(config), name=member.name)

"""Jump hosts (ProxyJump): a ``direct-tcpip`` channel through one SSH hop to the member.

paramiko has no ProxyJump (field note 12). mirrorsync opens its own connection to the jump host
(host key checked against the same known_hosts, public-key login), asks it for a ``direct-tcpip``
channel to the member's SSH port, and runs the member's SSH session inside that channel, where the
member's host key is checked again. Nothing is forwarded except that one TCP stream.
"""

from __future__ import annotations

import paramiko

from mirrorsync.errors import RemoteTimeoutError, TransportError

_ORIGIN = ("127.0.0.1", 0)
"""The originator address sent in the channel request; sshd only logs it."""


def open_direct_tcpip(
    transport: paramiko.Transport,
    host: str,
    port: int,
    *,
    timeout: float,
    where: str,
    via: str,
) -> paramiko.Channel:
    """Ask the jump host behind ``transport`` for a TCP stream to ``host:port``.

    ``where`` names the member (the prefix of every message), ``via`` the jump host. A refusal
    (``AllowTcpForwarding no``, ``PermitOpen``) or a member the jump host cannot reach is a
    `TransportError` that says which hop failed.
    """
    try:
        channel = transport.open_channel(
            "direct-tcpip", dest_addr=(host, port), src_addr=_ORIGIN, timeout=timeout
        )
    except paramiko.ChannelException as error:
        raise TransportError(
            f"{where}: the jump host {via} refused a tunnel to {host}:{port}: "
            f"{error.text or error.code} (does it allow TCP forwarding, and can it reach "
            "the member?)"
        ) from None
    except paramiko.SSHException as error:
        if "timeout" in str(error).lower() or "timed out" in str(error).lower():
            raise RemoteTimeoutError(
                f"{where}: the jump host {via} did not open a tunnel to {host}:{port} "
                f"within {timeout:g}s"
            ) from None
        raise TransportError(
            f"{where}: opening a tunnel through the jump host {via} failed: {error}"
        ) from None
    except (OSError, EOFError) as error:
        raise TransportError(
            f"{where}: the connection to the jump host {via} failed: {error}"
        ) from None
    return channel

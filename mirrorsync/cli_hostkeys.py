"""``mirrorsync hostkeys scan|trust``: show members' host keys, pin one after confirmation.

Registered on the main group by ``mirrorsync.cli``; paramiko is imported only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mirrorsync.cli_options import config_option, load, mirror_option, select_mirrors
from mirrorsync.exitcodes import ExitStatus


@click.group("hostkeys")
def hostkeys_group() -> None:
    """Show the members' SSH host keys and pin them in the configured known_hosts."""


@hostkeys_group.command("scan")
@config_option
@mirror_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
def scan_command(
    config_path: Path | None, mirror_names: tuple[str, ...], output_format: str
) -> None:
    """Show each member's (and jump host's) key fingerprint and whether it is pinned.

    Changes nothing. Exit 0 when every key is pinned, 1 otherwise.
    """
    from mirrorsync.ssh.pinning import PinStatus, scan_members

    config = load(config_path)
    mirrors = select_mirrors(config, mirror_names)
    scans = scan_members(config, mirrors)
    if output_format == "json":
        click.echo(
            json.dumps(
                {"known_hosts": str(config.ssh.known_hosts), "hosts": [s.to_json() for s in scans]},
                indent=2,
            )
        )
    else:
        click.echo(f"known_hosts: {config.ssh.known_hosts}")
        for scan in scans:
            key = f"{scan.key_type} {scan.fingerprint}" if scan.key_type else "-"
            click.echo(f"{scan.target:28} {scan.host}:{scan.port:<6} {key}  {scan.status.upper()}")
            if scan.status == PinStatus.CHANGED:
                click.echo(f"    pinned: {', '.join(scan.pinned)}")
            if scan.error:
                click.echo(f"    {scan.error}")
    all_pinned = all(scan.status == PinStatus.PINNED for scan in scans)
    raise SystemExit(int(ExitStatus.OK if all_pinned else ExitStatus.ERROR))


@hostkeys_group.command("trust")
@config_option
@click.option("--member", "member_name", required=True, help="The member whose key to pin.")
@click.option("--mirror", "mirror_name", default=None, help="The member's mirror, if ambiguous.")
@click.option("--jump", is_flag=True, help="Pin the member's jump host instead of the member.")
@click.option(
    "--expect-fingerprint",
    default=None,
    help="Pin only if the key has this fingerprint (SHA256:...), checked out of band. No prompt.",
)
@click.option("--yes", is_flag=True, help="Pin without asking (scripts; you trust the network).")
def trust_command(
    *,
    config_path: Path | None,
    member_name: str,
    mirror_name: str | None,
    jump: bool,
    expect_fingerprint: str | None,
    yes: bool,
) -> None:
    """Show a member's host key and append it to known_hosts after you confirm its fingerprint.

    A key that differs from an already pinned one is never replaced: remove the old line yourself
    once you know why it changed. Exit 0 pinned (or already pinned), 1 refused or declined.
    """
    from mirrorsync.ssh.pinning import PinStatus, append_pin, find_member, scan_for_trust

    config = load(config_path)
    member = find_member(config, member_name, mirror_name)
    scan = scan_for_trust(config, member, jump=jump)
    where = f"{scan.target} ({scan.host}:{scan.port})"
    if scan.status == PinStatus.ERROR:
        click.echo(f"mirrorsync: cannot scan {where}: {scan.error}", err=True)
        raise SystemExit(int(ExitStatus.ERROR))
    presented = f"{scan.key_type} {scan.fingerprint}"
    click.echo(f"{where} presents {presented}")
    if scan.status == PinStatus.PINNED:
        click.echo(f"already pinned in {config.ssh.known_hosts}")
        raise SystemExit(int(ExitStatus.OK))
    if scan.status in (PinStatus.CHANGED, PinStatus.REVOKED):
        held = (
            "marks this key @revoked"
            if scan.status == PinStatus.REVOKED
            else "pins " + ", ".join(scan.pinned)
        )
        click.echo(
            f"mirrorsync: refusing to pin: known_hosts {config.ssh.known_hosts} {held}; if the "
            "change is legitimate, remove the old line yourself and run trust again",
            err=True,
        )
        raise SystemExit(int(ExitStatus.ERROR))
    if expect_fingerprint is not None:
        if expect_fingerprint != scan.fingerprint:
            click.echo(
                f"mirrorsync: refusing to pin: expected {expect_fingerprint}, "
                f"the host presents {scan.fingerprint}",
                err=True,
            )
            raise SystemExit(int(ExitStatus.ERROR))
    elif not yes:
        click.echo(
            "Compare it with the host's own key, e.g. on the host: "
            "ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub"
        )
        if not click.confirm("Pin this key?", default=False):
            click.echo("not pinned")
            raise SystemExit(int(ExitStatus.ERROR))
    assert scan.known_hosts_line is not None
    append_pin(config.ssh.known_hosts, scan.known_hosts_line)
    click.echo(f"pinned in {config.ssh.known_hosts}: {scan.known_hosts_line}")
    raise SystemExit(int(ExitStatus.OK))

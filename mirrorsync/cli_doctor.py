"""``mirrorsync doctor``: read-only checks of a real mirror (registered by ``mirrorsync.cli``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mirrorsync.cli_options import config_option, connector, load


@click.command("doctor")
@config_option
@click.option(
    "--member",
    "member_name",
    default=None,
    help="Only this member's checks (mirror-wide checks are skipped; the item and export "
    "checks run only if it is the primary).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json is meant to be pasted into a bug report (no host names, users or secrets).",
)
def doctor_command(config_path: Path | None, member_name: str | None, output_format: str) -> None:
    """Check every assumption mirrorsync makes about the mirror. Changes no OAuth2 data.

    Prints PASS / FAIL / UNKNOWN per check with what to do: SSH and host keys, `iris session`
    and the login mode, version and OAuth2 layout, mirror roles, privileges, where the OAuth2
    globals live (mirrored database or not), the item set and an Export on the primary, and, on
    a scratch global ^mirrorsync.doctor that it creates and kills, whether Load kills before it
    sets, whether TROLLBACK undoes a Load, and how binary values appear in an export.

    \b
    Exit status:
      0  every check passed
      1  at least one check failed
      2  nothing failed, but at least one check is UNKNOWN (could not be decided)
      78 invalid configuration
    """
    from mirrorsync.doctor import run_doctor

    config = load(config_path)
    if member_name is not None and not any(
        m.name == member_name for mirror in config.mirrors for m in mirror.members
    ):
        known = ", ".join(m.name for mirror in config.mirrors for m in mirror.members)
        raise click.UsageError(f"--member {member_name}: no such member (configured: {known})")

    report = run_doctor(config, connector(config), member=member_name)
    if output_format == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render_text())
    raise SystemExit(report.exit_code)

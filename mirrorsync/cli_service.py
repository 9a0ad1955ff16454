"""Commands for mirrorsync as a service: `daemon` and `status` (click only; added by cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mirrorsync.cli_options import (
    config_option,
    config_path_or_default,
    connector,
    load,
    mirror_option,
    select_mirrors,
)
from mirrorsync.config import load_config


@click.command()
@config_option
def daemon(config_path: Path | None) -> None:
    """Run every mirror on its schedule until SIGTERM (the systemd service).

    SIGHUP reloads the config (a bad one is reported, the old one keeps running). SIGTERM or
    SIGINT stops at a safe step boundary and exits 0. Speaks systemd's notify protocol when
    $NOTIFY_SOCKET is set.
    """
    from mirrorsync.service.daemon import Daemon

    path = config_path_or_default(config_path)
    config = load_config(path)
    raise SystemExit(Daemon(path.absolute(), config, connector).serve())


@click.command()
@config_option
@mirror_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
def status(config_path: Path | None, mirror_names: tuple[str, ...], output_format: str) -> None:
    """The last run of each mirror, how long ago, and whether it is stale (for monitoring).

    Reads local state only. Exit 0 every mirror had a success within monitoring.stale_after,
    4 at least one is stale (or never succeeded), 1 a state file is unreadable.
    """
    from mirrorsync.service import status as service_status

    config = load(config_path)
    mirrors = select_mirrors(config, mirror_names)
    statuses = service_status.collect(config, mirrors)
    if output_format == "json":
        click.echo(service_status.render_json(statuses))
    else:
        click.echo(service_status.render_text(config, statuses))
    raise SystemExit(int(service_status.exit_status(statuses)))


def lock_wait_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--lock-wait SECONDS`` for commands that take the mirror lock."""
    return click.option(
        "--lock-wait",
        type=click.FloatRange(min=0),
        default=0,
        show_default=True,
        metavar="SECONDS",
        help="If another run holds a mirror's lock, wait this long for it; then exit 75.",
    )(function)

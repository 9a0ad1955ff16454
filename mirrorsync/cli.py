"""Command line (click only): parse, call the core, print, map the outcome to an exit code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import structlog

from mirrorsync import __version__
from mirrorsync.config import load_config
from mirrorsync.config.load import default_config_path
from mirrorsync.config.model import Config, MemberConfig, MirrorConfig
from mirrorsync.core.engine import MemberLink, run_mirrors
from mirrorsync.core.report import MirrorReport, combined_outcome, render_json, render_text
from mirrorsync.errors import ConfigError, MirrorsyncError
from mirrorsync.exitcodes import ExitStatus
from mirrorsync.logs import configure_logging

log = structlog.get_logger("mirrorsync.cli")


def _config_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Configuration file [default: $MIRRORSYNC_CONFIG or /etc/mirrorsync/config.yaml].",
    )(function)


def _mirror_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--mirror",
        "mirror_names",
        multiple=True,
        help="Only this mirror (repeatable) [default: every configured mirror].",
    )(function)


def _format_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Report format on stdout; the last text line is the outcome word.",
    )(function)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirrorsync")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level (logs go to stderr).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto = pretty on a terminal, JSON lines otherwise.",
)
def main_group(log_level: str, log_format: str) -> None:
    """Keep IRIS OAuth2 configuration identical on every member of an IRIS mirror."""
    configure_logging(log_level, log_format)  # type: ignore[arg-type]


def _load(config_path: Path | None) -> Config:
    return load_config(config_path or default_config_path())


def _select(config: Config, names: Sequence[str]) -> list[MirrorConfig]:
    if not names:
        return list(config.mirrors)
    return [config.mirror(name) for name in names]


def _connector(config: Config) -> Callable[[MemberConfig], MemberLink]:
    # Imported here so that `config validate` and `--help` never load paramiko.
    from mirrorsync.ssh import Endpoint, SshConnection, SshSettings

    settings = SshSettings(
        known_hosts=config.ssh.known_hosts,
        connect_timeout=config.ssh.connect_timeout,
        banner_timeout=config.ssh.banner_timeout,
        auth_timeout=config.ssh.auth_timeout,
    )

    def connect(member: MemberConfig) -> MemberLink:
        endpoint = Endpoint(member.host, member.port, member.user, member.identity_file)
        return SshConnection(endpoint, settings, name=member.name)

    return connect


def _emit(reports: Sequence[MirrorReport], output_format: str) -> NoReturn:
    text = render_json(reports) if output_format == "json" else render_text(reports)
    click.echo(text)
    outcome = combined_outcome(reports)
    raise SystemExit(int(next(r.exit_status for r in reports if r.outcome == outcome)))


@main_group.command()
@_config_option
@_mirror_option
@_format_option
def drift(config_path: Path | None, mirror_names: tuple[str, ...], output_format: str) -> None:
    """Compare every member with the primary, record by record. Changes nothing.

    Exit 0 in sync, 2 drift, 3 some members unreachable, 1 error or refusal.
    """
    config = _load(config_path)
    _emit(
        run_mirrors(config, _select(config, mirror_names), _connector(config), "drift"),
        output_format,
    )


@main_group.command()
@_config_option
@_mirror_option
@_format_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only report what a sync would change (exits like drift).",
)
def sync(
    config_path: Path | None, mirror_names: tuple[str, ...], output_format: str, dry_run: bool
) -> None:
    """Export the OAuth2 globals from the primary and import them on every drifted member,
    then prove by read-back that each member matches.

    Exit 0 synced/in sync, 1 error or refusal, 3 some members unreachable.
    """
    config = _load(config_path)
    action = "drift" if dry_run else "sync"
    _emit(
        run_mirrors(config, _select(config, mirror_names), _connector(config), action),
        output_format,
    )


@main_group.group("config")
def config_group() -> None:
    """Configuration helpers."""


@config_group.command("validate")
@_config_option
def config_validate(config_path: Path | None) -> None:
    """Validate the configuration file: prints OK, or every error (exit 78)."""
    path = config_path or default_config_path()
    load_config(path)
    click.echo(f"{path}: OK")


@main_group.group("lab")
def lab_group() -> None:
    """A local simulated IRIS mirror (real sshd per member, simulated IRIS) for demos and tests."""


@lab_group.command("up")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--members", default=3, show_default=True, type=click.IntRange(2, 9))
@click.option("--clients", default=12, show_default=True, type=click.IntRange(5, 5000))
@click.option("--seed", default=1, show_default=True, type=int, help="Seed for the generated data.")
def lab_up_command(directory: Path, members: int, clients: int, seed: int) -> None:
    """Start the lab and write DIR/config.yaml and DIR/hosts.json."""
    from mirrorsync.lab.lab import lab_up

    info = lab_up(directory, members=members, clients=clients, seed=seed)
    click.echo(info.describe())


@lab_group.command("down")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
def lab_down_command(directory: Path) -> None:
    """Stop every sshd of the lab in DIR."""
    from mirrorsync.lab.lab import lab_down

    lab_down(directory)
    click.echo(f"lab in {directory} is down")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: one error boundary mapping failures to documented exit codes."""
    try:
        returned = main_group.main(
            args=list(argv) if argv is not None else None, standalone_mode=False
        )
        if isinstance(returned, int):  # click returns Exit codes (e.g. from --help) here
            raise SystemExit(returned)
    except SystemExit as exc:
        raise SystemExit(exc.code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.UsageError as exc:
        # click uses 2 for usage errors; 2 means drift here, so usage is EX_USAGE (64).
        exc.show()
        raise SystemExit(ExitStatus.USAGE) from None
    except click.Abort:
        click.echo("Aborted.", err=True)
        raise SystemExit(ExitStatus.INTERRUPTED) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(ExitStatus.ERROR) from None
    except ConfigError as exc:
        click.echo(f"mirrorsync: invalid configuration:\n{exc}", err=True)
        click.echo("ERROR")
        raise SystemExit(ExitStatus.CONFIG) from None
    except MirrorsyncError as exc:
        click.echo(f"mirrorsync: {exc}", err=True)
        click.echo("ERROR")
        raise SystemExit(ExitStatus.ERROR) from None
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        raise SystemExit(ExitStatus.INTERRUPTED) from None
    except Exception:
        log.exception("unexpected_error")
        click.echo("mirrorsync: unexpected error (traceback in the log above)", err=True)
        click.echo("ERROR")
        raise SystemExit(ExitStatus.ERROR) from None
    raise SystemExit(ExitStatus.OK)


if __name__ == "__main__":  # pragma: no cover
    main()

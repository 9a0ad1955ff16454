"""Command line (click only): parse, call the core, print, map the outcome to an exit code."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import structlog

from mirrorsync import __version__
from mirrorsync.cli_doctor import doctor_command
from mirrorsync.cli_hostkeys import hostkeys_group
from mirrorsync.cli_options import (
    config_option,
    config_path_or_default,
    connector,
    load,
    mirror_option,
    select_mirrors,
)
from mirrorsync.cli_service import daemon, lock_wait_option, status
from mirrorsync.config import load_config
from mirrorsync.core.engine import MirrorRun, run_mirrors
from mirrorsync.core.report import MirrorReport, combined_outcome, render_json
from mirrorsync.errors import ConfigError, MirrorsyncError
from mirrorsync.exitcodes import ExitStatus
from mirrorsync.logs import configure_logging
from mirrorsync.service.lock import LockBusy, holding

log = structlog.get_logger("mirrorsync.cli")


def _format_option(function: Callable[..., Any]) -> Callable[..., Any]:
    # Issue 5: --fail-on-drift rides along with --format (every reporting command has both);
    # its value goes to ctx.meta, read by _emit, so command signatures stay unchanged.
    function = click.option(
        "--fail-on-drift/--no-fail-on-drift",
        default=True,
        show_default=True,
        expose_value=False,
        callback=lambda ctx, _param, value: ctx.meta.__setitem__("fail_on_drift", value),
        help="Exit 2 when drift remains; --no-fail-on-drift exits 0 instead (for wrappers).",
    )(function)
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json", "markdown"]),
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


def _emit(reports: Sequence[MirrorReport], output_format: str) -> NoReturn:
    from mirrorsync.core.render import render_markdown, render_text

    if output_format == "json":
        text = render_json(reports)
    elif output_format == "markdown":
        text = render_markdown(reports)
    else:
        text = render_text(reports, color=sys.stdout.isatty())
    # IRIS strings may hold lone UTF-16 surrogates; print them escaped, never crash on them.
    click.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    outcome = combined_outcome(reports)
    status = next(r.exit_status for r in reports if r.outcome == outcome)
    fail_on_drift = click.get_current_context().meta.get("fail_on_drift", True)
    if status == ExitStatus.DRIFT and not fail_on_drift:
        status = ExitStatus.OK  # --no-fail-on-drift: the report still says DRIFT
    from mirrorsync.service.run import INTERRUPTED

    if INTERRUPTED.is_set():
        status = ExitStatus.INTERRUPTED  # Ctrl-C: the report above says where it stopped
    raise SystemExit(int(status))


@main_group.command()
@config_option
@mirror_option
@_format_option
@lock_wait_option
def drift(
    config_path: Path | None, mirror_names: tuple[str, ...], output_format: str, lock_wait: float
) -> None:
    """Compare every member with the primary, record by record. Changes nothing remote.

    Takes the mirror's lock and records the run in the state directory (`status`, metrics).
    Exit 0 in sync, 2 drift, 3 some members unreachable, 1 error or refusal, 75 locked.
    """
    from mirrorsync.service.run import run_mirrors_locked

    config = load(config_path)
    mirrors = select_mirrors(config, mirror_names)
    _emit(
        run_mirrors_locked(config, mirrors, connector(config), "drift", lock_wait=lock_wait),
        output_format,
    )


@main_group.command()
@config_option
@mirror_option
@_format_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only report what a sync would add, change and delete (like `plan`; exits like drift).",
)
@click.option(
    "--allow-deletes",
    is_flag=True,
    help="Delete member-only records even beyond safety.max_deletes or after a failover.",
)
@lock_wait_option
def sync(
    config_path: Path | None,
    mirror_names: tuple[str, ...],
    output_format: str,
    dry_run: bool,
    allow_deletes: bool,
    lock_wait: float,
) -> None:
    """Export the OAuth2 globals from the primary and import them on every drifted member,
    then prove by read-back that each member matches.

    Each member is snapshotted before its import; the import runs in one transaction and a
    member that ends neither fully old nor fully new is restored from its snapshot.
    Exit 0 synced/in sync, 1 error or refusal, 2 drift left (dry run, or a member held back by
    the deletion guard), 3 some members unreachable.
    """
    from mirrorsync.service.run import run_mirrors_locked

    if not dry_run and not click.get_current_context().meta.get("fail_on_drift", True):
        # A held member (deletion guard) must never look like success.
        raise click.UsageError("--no-fail-on-drift applies to drift, plan and sync --dry-run")
    config = load(config_path)
    mirrors = select_mirrors(config, mirror_names)
    if dry_run:  # a plan writes nothing anywhere: no lock, no state
        _emit(
            run_mirrors(config, mirrors, connector(config), "plan", allow_deletes=allow_deletes),
            output_format,
        )
    _emit(
        run_mirrors_locked(
            config,
            mirrors,
            connector(config),
            "sync",
            lock_wait=lock_wait,
            allow_deletes=allow_deletes,
        ),
        output_format,
    )


@main_group.command()
@config_option
@mirror_option
@_format_option
@click.option(
    "--allow-deletes",
    is_flag=True,
    help="Plan as if --allow-deletes were given to sync.",
)
def plan(
    config_path: Path | None, mirror_names: tuple[str, ...], output_format: str, allow_deletes: bool
) -> None:
    """Show, per member, what a sync would add, change and delete. Writes nothing anywhere.

    Exits like drift: 0 nothing to do, 2 changes pending, 3 partial, 1 error.
    """
    config = load(config_path)
    _emit(
        run_mirrors(
            config,
            select_mirrors(config, mirror_names),
            connector(config),
            "plan",
            allow_deletes=allow_deletes,
        ),
        output_format,
    )


@main_group.group("config")
def config_group() -> None:
    """Configuration helpers."""


@config_group.command("validate")
@config_option
def config_validate(config_path: Path | None) -> None:
    """Validate the configuration file and the files it names: prints OK, or every error
    (exit 78)."""
    path = config_path_or_default(config_path)
    config = load_config(path)
    problems = [
        f"{path}: {what} {file} does not exist"
        for what, file in [
            ("ssh.known_hosts", config.ssh.known_hosts),
            *[
                (f"identity_file of member {member.name}", member.identity_file)
                for mirror in config.mirrors
                for member in mirror.members
            ],
        ]
        if not file.exists()
    ]
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))
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


# Issue 6: host key pinning (their own module, click only at import time).
@main_group.group("snapshots")
def snapshots_group() -> None:
    """Kept snapshots: member backups taken before imports, and the primary's exports."""


@snapshots_group.command("list")
@config_option
@mirror_option
@_format_option
@click.option("--member", default=None, help="Only this member.")
def snapshots_list(
    config_path: Path | None,
    mirror_names: tuple[str, ...],
    output_format: str,
    member: str | None,
) -> None:
    """List kept snapshots, newest first (reads local state only)."""
    from mirrorsync.core.snapshots import SnapshotStore

    config = load(config_path)
    store = SnapshotStore(config.state_dir)
    found = [
        s for mirror in select_mirrors(config, mirror_names) for s in store.all(mirror.name, member)
    ]
    if output_format == "json":
        click.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    if not found:
        click.echo("no snapshots")
        return
    click.echo(f"{'ID':26} {'MIRROR':12} {'MEMBER':10} {'KIND':15} {'NODES':>6}  TAKEN (UTC)")
    for snapshot in found:
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(snapshot.taken_at))
        click.echo(
            f"{snapshot.id:26} {snapshot.mirror:12} {snapshot.member:10} {snapshot.kind:15} "
            f"{snapshot.node_count:>6}  {taken}"
        )


@main_group.command()
@config_option
@_format_option
@click.option(
    "--mirror", "mirror_name", default=None, help="The member's mirror [default: the only one]."
)
@click.option("--member", required=True, help="The member to put back.")
@click.option("--snapshot", "snapshot_id", required=True, help="Snapshot id (`snapshots list`).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-primary", is_flag=True, help="Allow restoring the current primary.")
def restore(
    config_path: Path | None,
    output_format: str,
    mirror_name: str | None,
    member: str,
    snapshot_id: str,
    yes: bool,
    allow_primary: bool,
) -> None:
    """Put one member back to a kept snapshot, verified by read-back.

    The member's current state is snapshotted first. Exit 0 restored and verified, 1 not.
    """
    config = load(config_path)
    if mirror_name is None and len(config.mirrors) > 1:
        raise click.UsageError("several mirrors are configured: name one with --mirror")
    mirror = config.mirror(mirror_name) if mirror_name else config.mirrors[0]
    if not yes and not click.confirm(
        f"Replace the OAuth2 item set of {member} ({mirror.name}) with snapshot {snapshot_id}?",
        err=True,
    ):
        click.echo("not restored", err=True)
        raise SystemExit(ExitStatus.ERROR)
    run = MirrorRun(config, mirror, connector(config))
    with holding(config.state_dir, [mirror.name]):  # writes a member: the one mirror lock
        report = run.restore(member, snapshot_id, allow_primary=allow_primary)
    _emit([report], output_format)


main_group.add_command(hostkeys_group)
main_group.add_command(daemon)
main_group.add_command(status)
main_group.add_command(doctor_command)  # issue 6: read-only checks of a real mirror


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether the command line asked for ``--format json`` (so failures print JSON too)."""
    args = list(argv)
    return "--format=json" in args or any(
        a == "--format" and b == "json" for a, b in itertools.pairwise(args)
    )


def _fail(word: str, message: str, code: ExitStatus, argv: Sequence[str]) -> NoReturn:
    """Report a failure that produced no report: message on stderr, outcome on stdout."""
    click.echo(message, err=True)
    if _wants_json(argv):
        click.echo(json.dumps({"outcome": word, "exit_code": int(code), "error": message}))
    else:
        click.echo(word)
    raise SystemExit(int(code))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: one error boundary mapping failures to documented exit codes."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        returned = main_group.main(args=args, standalone_mode=False)
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
    except LockBusy as exc:
        # Not an alert: another run (the daemon, a timer, an operator) is on this mirror.
        _fail("LOCKED", f"mirrorsync: {exc}", ExitStatus.TEMPFAIL, args)
    except ConfigError as exc:
        _fail("ERROR", f"mirrorsync: invalid configuration:\n{exc}", ExitStatus.CONFIG, args)
    except MirrorsyncError as exc:
        _fail("ERROR", f"mirrorsync: {exc}", ExitStatus.ERROR, args)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        raise SystemExit(ExitStatus.INTERRUPTED) from None
    except Exception:
        log.exception("unexpected_error")
        _fail(
            "ERROR",
            "mirrorsync: unexpected error (traceback in the log above)",
            ExitStatus.ERROR,
            args,
        )
    raise SystemExit(ExitStatus.OK)


if __name__ == "__main__":  # pragma: no cover
    main()

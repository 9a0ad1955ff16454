"""Drift and sync of one mirror: probe, find the primary, read out, export, import, verify.

Nothing here imports paramiko or click: members are reached through ``MemberLink`` objects made
by a ``Connector`` (``mirrorsync.ssh.SshConnection`` in production).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import structlog
import tenacity

from mirrorsync.config.model import Config, MemberConfig, MirrorConfig
from mirrorsync.core.backup import save_baseline, save_readout
from mirrorsync.core.diff import compare
from mirrorsync.core.report import MemberReport, MemberStatus, MirrorReport, Outcome
from mirrorsync.errors import (
    HostKeyError,
    IrisError,
    MirrorsyncError,
    RemoteTimeoutError,
    RunAbandoned,
    TransportError,
)
from mirrorsync.iris import scripts
from mirrorsync.iris.results import (
    Discovery,
    NodeKey,
    Probe,
    Role,
    parse_discovery,
    parse_probe,
    parse_readout,
)
from mirrorsync.iris.terminal import CommandRunner, IrisTerminal

log = structlog.get_logger("mirrorsync.engine")
T = TypeVar("T")

# IRIS 2025.2 (CD) / 2026.1 (EM) moved OAuth2 into ^SECURITY in IRISSECURITY (facts §6.2).
FIRST_IRISSECURITY_VERSION = (2025, 2)
EXPORT_FILE = "oauth2-export.xml"
EXPORT_ATTEMPTS = 3


class Digest(Protocol):
    """Size and SHA-256 of a file."""

    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class MemberLink(CommandRunner, Protocol):
    """An open line to one member: commands and private file transfers."""

    def make_private_dir(self, parent: str, prefix: str) -> str: ...
    def chmod(self, remote: str, mode: int) -> None: ...
    def upload(self, local: Path, remote: str, *, timeout: float) -> Digest: ...
    def download(self, remote: str, local: Path, *, timeout: float) -> Digest: ...
    def remove_private_dir(self, path: str) -> None: ...
    def close(self) -> None: ...


Connector = Callable[[MemberConfig], MemberLink]
StopCheck = Callable[[], str | None]
"""Returns a reason when the run must stop (deadline passed, SIGTERM), else None. Checked only
at safe step boundaries: never inside an import, which IRIS runs as one Load call."""


@dataclass
class _Member:
    config: MemberConfig
    link: MemberLink
    terminal: IrisTerminal
    report: MemberReport
    probe: Probe | None = None
    readout: dict[NodeKey, str] = field(default_factory=dict)


class MirrorRun:
    """One drift or sync run over one mirror."""

    def __init__(
        self,
        config: Config,
        mirror: MirrorConfig,
        connector: Connector,
        *,
        stop: StopCheck | None = None,
    ) -> None:
        self.config = config
        self.mirror = mirror
        self.connector = connector
        self.stop = stop
        self.names = config.items.global_names()
        self.index_globals = frozenset(n for n in self.names if n.endswith("I"))

    # ---------------------------------------------------------------- public API
    def drift(self) -> MirrorReport:
        """Compare every member with the primary; change nothing."""
        with self._members("drift") as (report, members):
            try:
                self._compare_all(report, members)
            except RunAbandoned as exc:
                self._abandon(report, members, exc)
            return report

    def sync(self) -> MirrorReport:
        """Make every member hold exactly the primary's item set, verified by read-back."""
        with self._members("sync") as (report, members):
            try:
                self._sync(report, members)
            except RunAbandoned as exc:
                self._abandon(report, members, exc)
            if report.outcome in (Outcome.SYNCED, Outcome.IN_SYNC) and report.primary:
                primary = next(m for m in members if m.config.name == report.primary)
                save_baseline(
                    self.config.state_dir, self.mirror.name, report.primary, primary.readout
                )
            return report

    def _sync(self, report: MirrorReport, members: list[_Member]) -> None:
        primary = self._compare_all(report, members)
        if primary is None:
            return
        targets = [m for m in members if m.report.status == MemberStatus.DRIFT]
        if not targets:
            return
        if not primary.readout:
            report.refusal = (
                f"the primary {primary.config.name} holds none of the configured globals; "
                "refusing to empty the other members"
            )
            for member in targets:
                member.report.status = MemberStatus.ERROR
                member.report.error = "not synced: " + report.refusal
            return
        self._checkpoint("the export")
        self._sync_targets(report, primary, targets)

    def _abandon(self, report: MirrorReport, members: list[_Member], exc: RunAbandoned) -> None:
        report.refusal = f"run abandoned at a safe step boundary: {exc}"
        for member in members:
            if member.report.status in (None, MemberStatus.DRIFT):
                member.report.status = MemberStatus.ERROR
                member.report.error = "not handled: run abandoned"
        log.warning("mirror.abandoned", mirror=self.mirror.name, reason=str(exc))

    def _checkpoint(self, before: str) -> None:
        """Stop here if asked to: a safe boundary (no member is between kill and load)."""
        reason = self.stop() if self.stop is not None else None
        if reason:
            raise RunAbandoned(f"{reason} (stopped before {before})")

    # ---------------------------------------------------------------- steps
    @contextmanager
    def _members(self, action: str) -> Iterator[tuple[MirrorReport, list[_Member]]]:
        members = [self._member(config) for config in self.mirror.members]
        report = MirrorReport(self.mirror.name, action, [m.report for m in members])
        started = time.monotonic()
        try:
            yield report, members
        finally:
            for member in members:
                try:
                    member.link.close()
                except Exception as exc:
                    log.warning("member.close_failed", member=member.config.name, error=str(exc))
            log.info(
                "mirror.done",
                mirror=self.mirror.name,
                action=action,
                outcome=report.outcome.value,
                primary=report.primary,
                seconds=round(time.monotonic() - started, 3),
            )

    def _member(self, config: MemberConfig) -> _Member:
        link = self.connector(config)
        credentials = self.config.iris.credentials
        terminal = IrisTerminal(
            runner=link,
            member=config.name,
            iris_command=config.iris_command,
            instance=config.instance,
            namespace=self.config.iris.namespace,
            timeout=self.config.ssh.command_timeout,
            credentials=credentials.resolve if credentials is not None else None,
        )
        return _Member(config, link, terminal, MemberReport(config.name))

    def _compare_all(self, report: MirrorReport, members: list[_Member]) -> _Member | None:
        """Probe, find the one primary, read everything out, compare. Returns the primary."""
        self._checkpoint("probing the members")
        self._parallel(members, self._probe)
        primary = self._choose_primary(report, members)
        if primary is None:
            return None
        discovery = self._retrying(primary, "discover", lambda: self._discover(primary))
        if isinstance(discovery, Exception):
            self._fail(primary, discovery)
            report.refusal = f"cannot read the item set on the primary: {discovery}"
            return None
        self._warn_missing(report, primary, discovery)
        try:
            primary.readout = self._read(primary)
        except MirrorsyncError as exc:
            self._fail(primary, exc)
            report.refusal = f"cannot read the item set on the primary: {exc}"
            return None
        others = [m for m in members if m is not primary and m.report.status is None]
        self._parallel(others, lambda m: self._compare_member(primary, m))
        primary.report.status = MemberStatus.IN_SYNC
        return primary

    def _probe(self, member: _Member) -> None:
        result = self._retrying(
            member,
            "probe",
            lambda: parse_probe(
                member.terminal.execute(scripts.probe, what="probe"), f"{member.config.name}: probe"
            ),
        )
        if isinstance(result, Exception):
            self._fail(member, result)
            return
        member.probe = result
        member.report.role = result.role.value
        member.report.version = result.version
        log.info(
            "member.probe",
            member=member.config.name,
            role=result.role.value,
            version=result.version,
            mirror_status=result.status,
        )

    def _choose_primary(self, report: MirrorReport, members: list[_Member]) -> _Member | None:
        probed = [m for m in members if m.probe is not None]
        primaries = [m for m in probed if m.report.role == Role.PRIMARY]
        refusal = self._refusal(members, probed, primaries)
        if refusal is not None:
            report.refusal = refusal
            if primaries:
                report.primary = ",".join(m.config.name for m in primaries)
            for member in probed:
                member.report.status = MemberStatus.ERROR
                member.report.error = "not compared: run refused"
            log.error("mirror.refused", mirror=self.mirror.name, reason=refusal)
            return None
        primary = primaries[0]
        report.primary = primary.config.name
        said = primary.probe.mirror_name if primary.probe else ""
        if said and said != self.mirror.name:
            report.warnings.append(
                f"the primary says its mirror is {said!r}, configured as {self.mirror.name!r}"
            )
        for member in probed:
            if member is not primary and member.probe is not None:
                self._check_target(member, member.probe)
        return primary

    def _refusal(
        self, members: list[_Member], probed: list[_Member], primaries: list[_Member]
    ) -> str | None:
        """Why nothing may be written this run, or None."""
        in_transition = [m.config.name for m in probed if m.report.role == Role.TRANSITION]
        if in_transition:
            return (
                "member(s) in transition (failover member neither primary nor backup): "
                f"{', '.join(in_transition)}; refusing to write anything until the mirror settles"
            )
        if len(primaries) > 1:
            names = ", ".join(m.config.name for m in primaries)
            return (
                f"more than one member reports itself primary: {names}; refusing to write anything"
            )
        if not primaries:
            failed = [m.config.name for m in members if m.report.status is not None]
            reason = "no member reports itself primary"
            if failed:
                reason += f" (not reachable or failed: {', '.join(failed)})"
            return reason + "; refusing to write anything"
        probe = primaries[0].probe
        if probe is not None and probe.version_tuple[:2] >= FIRST_IRISSECURITY_VERSION:
            return (
                f"the primary {primaries[0].config.name} runs IRIS {probe.version}, which keeps "
                "OAuth2 in ^SECURITY (IRISSECURITY): not supported yet; nothing was written"
            )
        return None

    def _check_target(self, member: _Member, probe: Probe) -> None:
        """Mark members that must not be touched (not a member, unsupported version)."""
        if member.report.role == Role.NOT_MEMBER:
            member.report.status = MemberStatus.ERROR
            member.report.error = "not a mirror member ($SYSTEM.Mirror.IsMember()=0); not touched"
        elif probe.version_tuple[:2] >= FIRST_IRISSECURITY_VERSION:
            member.report.status = MemberStatus.ERROR
            member.report.error = (
                f"IRIS {probe.version} keeps OAuth2 in ^SECURITY (IRISSECURITY): "
                "not supported yet; not touched"
            )

    def _discover(self, primary: _Member) -> Discovery:
        payload = primary.terminal.execute(
            lambda token: scripts.discover(token, self.names), what="discover"
        )
        return parse_discovery(payload, f"{primary.config.name}: discover")

    def _warn_missing(self, report: MirrorReport, primary: _Member, discovery: Discovery) -> None:
        extra = set(self.config.items.extra_globals)
        for name in self.names:
            if discovery.data.get(name, 0) > 0:
                continue
            if name not in extra and not name.endswith("D"):
                continue  # index and stream globals exist only for classes that need them
            hint = ""
            similar = discovery.suggestions(name)
            if similar:
                found = ", ".join("^" + s for s in similar)
                hint = f" (found {found}: global names are case-sensitive)"
            report.warnings.append(
                f"^{name} does not exist on the primary {primary.config.name}{hint}"
            )

    def _read(self, member: _Member) -> dict[NodeKey, str]:
        def read() -> dict[NodeKey, str]:
            payload = member.terminal.execute(
                lambda token: scripts.readout(token, self.names), what="read-out"
            )
            return parse_readout(payload, self.names, f"{member.config.name}: read-out")

        result = self._retrying(member, "read-out", read)
        if isinstance(result, Exception):
            raise result
        return result

    def _compare_member(self, primary: _Member, member: _Member) -> None:
        try:
            member.readout = self._read(member)
        except MirrorsyncError as exc:
            self._fail(member, exc)
            return
        member.report.differences = compare(primary.readout, member.readout, self.index_globals)
        member.report.status = (
            MemberStatus.DRIFT if member.report.differences else MemberStatus.IN_SYNC
        )
        log.info(
            "member.compared",
            member=member.config.name,
            status=member.report.status.value,
            differing_records=len(member.report.differences),
        )

    def _sync_targets(self, report: MirrorReport, primary: _Member, targets: list[_Member]) -> None:
        local_dir = self._local_workdir()
        remote_dir: str | None = None
        try:
            try:
                remote_dir = self._retrying_or_raise(
                    primary,
                    "make remote directory",
                    lambda: primary.link.make_private_dir(
                        self.mirror.remote_tmp_dir, "mirrorsync-"
                    ),
                )
                local_file = self._export(primary, f"{remote_dir}/{EXPORT_FILE}", local_dir)
            except MirrorsyncError as exc:
                report.refusal = f"export on the primary {primary.config.name} failed: {exc}"
                for member in targets:
                    member.report.status = MemberStatus.ERROR
                    member.report.error = "not synced: the export failed"
                return
            self._parallel(targets, lambda m: self._import(primary, m, local_file))
        finally:
            if remote_dir is not None:
                self._cleanup(primary, remote_dir)
            shutil.rmtree(local_dir, ignore_errors=True)

    def _export(self, primary: _Member, remote_path: str, local_dir: Path) -> Path:
        """Export on the primary until a read-out taken after the export equals the one taken
        before it: then the file holds exactly ``primary.readout`` (the primary is live)."""
        local_file = local_dir / EXPORT_FILE
        for attempt in range(1, EXPORT_ATTEMPTS + 1):
            self._retrying_or_raise(
                primary,
                "export",
                lambda: primary.terminal.execute(
                    lambda token: scripts.export(token, self._exported_names(primary), remote_path),
                    what="export",
                ),
            )
            primary.link.chmod(remote_path, 0o600)
            after = self._read(primary)
            if after == primary.readout:
                break
            log.warning(
                "primary.changed_during_export", member=primary.config.name, attempt=attempt
            )
            primary.readout = after
        else:
            raise IrisError("the primary kept changing during the export; try again later")
        digest = self._retrying_or_raise(
            primary,
            "download",
            lambda: primary.link.download(
                remote_path, local_file, timeout=self.config.ssh.transfer_timeout
            ),
        )
        log.info(
            "primary.exported", member=primary.config.name, bytes=digest.size, sha256=digest.sha256
        )
        return local_file

    def _exported_names(self, primary: _Member) -> list[str]:
        present = {node[0] for node in primary.readout}
        return [name for name in self.names if name in present]

    def _import(self, primary: _Member, member: _Member, local_file: Path) -> None:
        name = member.config.name
        remote_dir: str | None = None
        try:
            self._checkpoint(f"the upload to {name}")
            remote_dir = self._retrying_or_raise(
                member,
                "make remote directory",
                lambda: member.link.make_private_dir(self.mirror.remote_tmp_dir, "mirrorsync-"),
            )
            remote_path = f"{remote_dir}/{EXPORT_FILE}"
            self._retrying_or_raise(
                member,
                "upload",
                lambda: member.link.upload(
                    local_file, remote_path, timeout=self.config.ssh.transfer_timeout
                ),
            )
            # Keep what we replace: the member's current copy, saved locally before the import.
            saved = save_readout(self.config.state_dir, self.mirror.name, name, member.readout)
            log.info("member.backup_saved", member=name, path=str(saved), nodes=len(member.readout))
            on_primary = {node[0] for node in primary.readout}
            on_member = {node[0] for node in member.readout}
            kill = [g for g in self.names if g in on_member and g not in on_primary]
            self._checkpoint(f"the import on {name}")
            # Never retried: a repeated import is only safe once we have looked again.
            member.terminal.execute(
                lambda token: scripts.load(token, remote_path, kill), what="import"
            )
            log.info("member.imported", member=name)
            member.readout = self._read(member)
            remaining = compare(primary.readout, member.readout, self.index_globals)
            if remaining:
                member.report.status = MemberStatus.ERROR
                member.report.error = (
                    f"read-back after import still differs from the primary in {len(remaining)} "
                    "record(s); not synced"
                )
                member.report.differences = remaining
                log.error("member.verify_failed", member=name, differing_records=len(remaining))
            else:
                member.report.status = MemberStatus.SYNCED
                log.info("member.synced", member=name, records=len(member.report.differences))
        except MirrorsyncError as exc:
            self._fail(member, exc, during_sync=True)
        finally:
            if remote_dir is not None:
                self._cleanup(member, remote_dir)

    # ---------------------------------------------------------------- helpers
    def _local_workdir(self) -> Path:
        base = self.config.state_dir / "tmp"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        base.chmod(0o700)
        return Path(tempfile.mkdtemp(prefix="run-", dir=base))

    def _cleanup(self, member: _Member, remote_dir: str) -> None:
        try:
            member.link.remove_private_dir(remote_dir)
        except MirrorsyncError as exc:
            log.warning(
                "member.cleanup_failed", member=member.config.name, path=remote_dir, error=str(exc)
            )

    def _fail(self, member: _Member, exc: Exception, *, during_sync: bool = False) -> None:
        unreachable = (
            isinstance(exc, TransportError)
            and not isinstance(exc, HostKeyError)
            and exc.transient
            and not during_sync
        )
        member.report.status = MemberStatus.UNREACHABLE if unreachable else MemberStatus.ERROR
        if isinstance(exc, RemoteTimeoutError):
            member.report.error = f"timed out: {exc}"
        else:
            member.report.error = str(exc)
        log.error(
            "member.failed",
            member=member.config.name,
            status=member.report.status.value,
            error=member.report.error,
        )

    def _retrying(self, member: _Member, step: str, action: Callable[[], T]) -> T | Exception:
        try:
            return self._retrying_or_raise(member, step, action)
        except MirrorsyncError as exc:
            return exc

    def _retrying_or_raise(self, member: _Member, step: str, action: Callable[[], T]) -> T:
        """Retry transient transport failures only, logging each retry (never imports)."""
        settings = self.config.retry

        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            log.warning(
                "member.retry",
                member=member.config.name,
                step=step,
                attempt=state.attempt_number,
                error=str(outcome.exception()) if outcome else None,
            )

        retryer = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(settings.attempts),
            wait=tenacity.wait_exponential(multiplier=settings.initial_wait, max=settings.max_wait),
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, TransportError) and exc.transient
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retryer(action)

    def _parallel(self, members: Sequence[_Member], work: Callable[[_Member], None]) -> None:
        if not members:
            return

        def isolated(member: _Member) -> None:
            # One member's unexpected failure (a bug, an odd library error) must not stop the
            # others: it becomes that member's error, with the traceback in the log.
            try:
                work(member)
            except Exception as exc:
                log.exception("member.unexpected_error", member=member.config.name)
                member.report.status = MemberStatus.ERROR
                member.report.error = f"unexpected error: {type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(max_workers=min(8, len(members))) as pool:
            list(pool.map(isolated, members))


def run_mirrors(
    config: Config,
    mirrors: Sequence[MirrorConfig],
    connector: Connector,
    action: str,
) -> list[MirrorReport]:
    """Run ``action`` ("drift" or "sync") over each mirror in turn."""
    reports = []
    for mirror in mirrors:
        run = MirrorRun(config, mirror, connector)
        reports.append(run.sync() if action == "sync" else run.drift())
    return reports


def summary_counts(reports: Sequence[MirrorReport]) -> Mapping[str, int]:
    """How many members ended in each status (for logs)."""
    counts: dict[str, int] = {}
    for report in reports:
        for member in report.members:
            key = member.status.value if member.status else "not_handled"
            counts[key] = counts.get(key, 0) + 1
    return counts

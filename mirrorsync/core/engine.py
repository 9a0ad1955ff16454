"""Drift and sync of one mirror: probe, find the primary, read out, export, import, verify.

Nothing here imports paramiko or click: members are reached through ``MemberLink`` objects made
by a ``Connector`` (``mirrorsync.ssh.SshConnection`` in production).
"""

from __future__ import annotations

import logging
import secrets
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

from mirrorsync.config.model import ITEM_GROUP_CLASSES, Config, MemberConfig, MirrorConfig
from mirrorsync.core.backup import load_baseline, save_baseline
from mirrorsync.core.diff import Difference, Kind, compare, record_key
from mirrorsync.core.explain import explain_member
from mirrorsync.core.report import MemberReport, MemberStatus, MirrorReport, Outcome
from mirrorsync.core.snapshots import MEMBER_BACKUP, PRIMARY_EXPORT, Snapshot, SnapshotStore
from mirrorsync.errors import (
    ConfigError,
    HostKeyError,
    IrisError,
    MirrorsyncError,
    RemoteTimeoutError,
    RunAbandoned,
    TransportError,
)
from mirrorsync.iris import mapping, scripts
from mirrorsync.iris.layout import (
    NESTED_ROOT,
    ItemPlan,
    SecurityDiscovery,
    StorageLayout,
    detect_layout,
    flat_candidates,
    logical_readout,
    pair_refusal,
    parse_security_discovery,
    plan_for,
    privilege_problem,
    uses_irissecurity,
)
from mirrorsync.iris.results import (
    Discovery,
    NodeKey,
    Probe,
    Role,
    parse_discovery,
    parse_probe,
    parse_readout,
)
from mirrorsync.iris.terminal import CommandRunner, IrisTerminal, terminal_for

log = structlog.get_logger("mirrorsync.engine")
T = TypeVar("T")

# IRIS 2025.2 (CD) / 2026.1 (EM) moved OAuth2 into ^SECURITY in IRISSECURITY (facts §6.2).
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
    def stale_private_dirs(self, parent: str, prefix: str, older_than: float) -> list[str]: ...
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
    """Logical read-out: nested ^SECURITY("OAuth2",...) keys read as the former global names."""
    layout: StorageLayout | None = None
    security: SecurityDiscovery | None = None


class MirrorRun:
    """One drift or sync run over one mirror."""

    def __init__(
        self,
        config: Config,
        mirror: MirrorConfig,
        connector: Connector,
        *,
        stop: StopCheck | None = None,
        allow_deletes: bool = False,
    ) -> None:
        self.config = config
        self.mirror = mirror
        self.connector = connector
        self.stop = stop
        self.allow_deletes = allow_deletes
        self.run_id = secrets.token_hex(4)
        if config.iris.credentials is not None:
            # Fail before connecting anywhere (ConfigError, exit 78) if the password source is
            # missing, instead of once per member; the value is read again per session.
            config.iris.credentials.resolve()
        self.snapshots = SnapshotStore(config.state_dir)
        self.names = config.items.global_names()
        self.wanted = flat_candidates(
            [ITEM_GROUP_CLASSES[group] for group in config.items.groups],
            config.items.extra_globals,
        )
        self.index_globals = frozenset(n for n in {*self.names, *self.wanted} if n.endswith("I"))
        self.primary_plan: ItemPlan | None = None
        self.action = "drift"

    # ---------------------------------------------------------------- public API
    def drift(self) -> MirrorReport:
        """Compare every member with the primary; change nothing."""
        self.action = "drift"
        with self._members("drift") as (report, members):
            try:
                self._compare_all(report, members)
            except RunAbandoned as exc:
                self._abandon(report, members, exc)
            return report

    def sync(self) -> MirrorReport:
        """Make every member hold exactly the primary's item set, verified by read-back."""
        self.action = "sync"
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

    def plan(self) -> MirrorReport:
        """What a sync would add, change and delete per member (and what it would hold back,
        or refuse). Nothing is written, remote or local."""
        self.action = "plan"
        with self._members("plan") as (report, members):
            try:
                primary = self._compare_all(report, members)
                if primary is not None:
                    self._refuse_empty_primary(report, primary, members)
            except RunAbandoned as exc:
                self._abandon(report, members, exc)
            return report

    def _refuse_empty_primary(
        self, report: MirrorReport, primary: _Member, members: list[_Member]
    ) -> bool:
        """A primary holding none of the item set must never empty the members."""
        drifted = [m for m in members if m.report.status == MemberStatus.DRIFT]
        if primary.readout or not drifted:
            return False
        report.refusal = (
            f"the primary {primary.config.name} holds none of the configured globals; "
            "refusing to empty the other members"
        )
        for member in drifted:
            member.report.status = MemberStatus.ERROR
            member.report.error = "not synced: " + report.refusal
        return True

    def restore(
        self, member_name: str, snapshot_id: str, *, allow_primary: bool = False
    ) -> MirrorReport:
        """Put one member back to a kept snapshot, verified by read-back. The member's current
        state is kept as a snapshot first, like before any import."""
        snapshot = self.snapshots.get(self.mirror.name, member_name, snapshot_id)
        snapshot.verify()
        configs = [m for m in self.mirror.members if m.name == member_name]
        if not configs:
            known = ", ".join(m.name for m in self.mirror.members)
            raise ConfigError(f"mirror {self.mirror.name} has no member {member_name!r} ({known})")
        member = self._member(configs[0])
        report = MirrorReport(self.mirror.name, "restore", [member.report])
        try:
            self._probe(member)
            if member.probe is None:
                return report
            refusal = self._restore_refusal(member.probe, allow_primary) or self._layout_refusal(
                member, snapshot
            )
            if refusal is not None:
                report.refusal = refusal
                member.report.status = MemberStatus.ERROR
                member.report.error = "not restored: " + refusal
                return report
            if member.probe.role == Role.PRIMARY:
                report.primary = member_name
            self._restore_member(member, snapshot)
        finally:
            member.link.close()
        return report

    def _restore_refusal(self, probe: Probe, allow_primary: bool) -> str | None:
        if probe.role == Role.TRANSITION:
            return "the member is in transition; try again when the mirror has settled"
        if probe.role == Role.PRIMARY and not allow_primary:
            return (
                "the member is the current primary: restoring it changes what every other member "
                "is synced from; add --allow-primary if that is what you want"
            )
        return None

    def _layout_refusal(self, member: _Member, snapshot: Snapshot) -> str | None:
        """A snapshot only goes back into the storage layout it was taken from: a 2025.1
        export loaded into a 2025.2 member would write ^OAuth2.* globals IRIS no longer reads
        and leave its ^SECURITY data emptied."""
        current = member.layout.value if member.layout else None
        taken = snapshot.layout or StorageLayout.CLASSIC.value
        if current is not None and taken != current:
            return (
                f"snapshot {snapshot.id} was taken from a member storing OAuth2 as {taken} "
                f"(IRIS {snapshot.version or 'unknown'}); {member.config.name} now stores it as "
                f"{current} (IRIS {member.report.version}): restoring it would put the data "
                "where this IRIS does not read it"
            )
        return None

    def _restore_member(self, member: _Member, snapshot: Snapshot) -> None:
        local_dir = self._local_workdir()
        remote_dir: str | None = None
        try:
            self.primary_plan = self._own_plan(member)
            member.readout = self._read(member)
            remote_dir = self._private_remote_dir(member)
            present = self._items_present(member)
            backup = self._export_to_snapshot(member, present, remote_dir, local_dir, MEMBER_BACKUP)
            member.report.snapshot = backup.id
            if self._restore_snapshot(member, snapshot, remote_dir):
                member.report.status = MemberStatus.SYNCED
                return
            member.report.status = MemberStatus.ERROR
            # Put back what was there before this restore, like a failed sync does.
            if self._restore_snapshot(member, backup, remote_dir):
                member.report.error = (
                    f"the read-back after restoring {snapshot.id} did not match it; the member "
                    f"was put back to its state before the restore (snapshot {backup.id}, "
                    "verified by read-back)"
                )
            else:
                member.report.error = (
                    f"the read-back after restoring {snapshot.id} did not match it, and putting "
                    f"back snapshot {backup.id} (its state before the restore) failed too: "
                    "restore one of them by hand"
                )
        except MirrorsyncError as exc:
            self._fail(member, exc, during_sync=True)
        finally:
            if remote_dir is not None:
                self._cleanup(member, remote_dir)
            shutil.rmtree(local_dir, ignore_errors=True)

    def _sync(self, report: MirrorReport, members: list[_Member]) -> None:
        primary = self._compare_all(report, members)
        if primary is None:
            return
        if self._refuse_empty_primary(report, primary, members):
            return
        drifted = [m for m in members if m.report.status == MemberStatus.DRIFT]
        if not drifted:
            return
        self._clean_leftovers(members)
        targets = [m for m in drifted if not m.report.held]
        if not targets:
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
                if member.report.status is None:
                    member.report.status = MemberStatus.ERROR
                    member.report.error = member.report.error or "not handled: run refused"
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
        terminal = terminal_for(self.config, config, link)
        return _Member(config, link, terminal, MemberReport(config.name))

    def _compare_all(self, report: MirrorReport, members: list[_Member]) -> _Member | None:
        """Probe, find the one primary, read everything out, compare. Returns the primary."""
        self._checkpoint("probing the members")
        self._parallel(members, self._probe)
        # Issue 6 (iris/mapping.py): globals in a mirrored database are left to mirroring.
        left = mapping.exclude_mirrored(
            self.names, [(m.config.name, m.probe, m.terminal) for m in members]
        )
        report.warnings.extend(left.warnings)
        if left.refusal:
            report.refusal = left.refusal
            return None
        self.names = left.kept
        primary = self._choose_primary(report, members)
        if primary is None:
            return None
        if primary.layout == StorageLayout.CLASSIC:
            discovery = self._retrying(primary, "discover", lambda: self._discover(primary))
            if isinstance(discovery, Exception):
                self._fail(primary, discovery)
                report.refusal = f"cannot read the item set on the primary: {discovery}"
                return None
            self._warn_missing(report, primary, discovery)
        elif primary.security is not None:
            for name in primary.security.unsafe:
                report.warnings.append(
                    f"^SECURITY({name!r}) on the primary has characters mirrorsync does not "
                    "handle; it is not synced"
                )
        try:
            primary.readout = self._read(primary)
        except MirrorsyncError as exc:
            self._fail(primary, exc)
            report.refusal = f"cannot read the item set on the primary: {exc}"
            return None
        others = [m for m in members if m is not primary and m.report.status is None]
        self._parallel(others, lambda m: self._compare_member(primary, m))
        primary.report.status = MemberStatus.IN_SYNC
        primary.report.explanation = explain_member(  # issue 5: the primary's index coherence
            self.config, self.mirror.name, primary.readout, primary.readout, primary.report.version
        )
        self._guard_deletions(report, primary, others)
        return primary

    def _guard_deletions(
        self, report: MirrorReport, primary: _Member, others: list[_Member]
    ) -> None:
        """Hold back members whose sync would delete too much or, after a failover, would
        delete or overwrite records that may have been made on the former primary just before
        it failed (they may be newer than what the new primary holds)."""
        if self.allow_deletes:
            return
        try:
            baseline = load_baseline(self.config.state_dir, self.mirror.name)
        except (OSError, ValueError, KeyError) as exc:
            report.warnings.append(f"the baseline of the last sync is unreadable: {exc}")
            baseline = None
        former = baseline[0] if baseline and baseline[0] != primary.config.name else None
        limit = self.config.safety.max_deletes
        for member in others:
            if member.report.status != MemberStatus.DRIFT:
                continue
            records = [
                d for d in member.report.differences if d.global_name not in self.index_globals
            ]
            removed = [d for d in records if d.kind == Kind.REMOVED]
            if former is not None and baseline is not None:
                edited = [
                    d
                    for d in records
                    if d.kind == Kind.CHANGED
                    and self._record(member.readout, d) != self._record(baseline[1], d)
                ]
                if removed or edited:
                    member.report.held = (
                        f"{len(removed)} record(s) present only on the former primary / other "
                        f"members and {len(edited)} record(s) changed on this member since the "
                        f"last successful sync: the primary changed from {former} to "
                        f"{primary.config.name}, so they are not deleted or overwritten "
                        "automatically; make the same change on the new primary, or rerun with "
                        "--allow-deletes to take the new primary's copy"
                    )
            elif len(removed) > limit:
                member.report.held = (
                    f"a sync would delete {len(removed)} record(s), more than "
                    f"safety.max_deletes={limit}; check them, then rerun with --allow-deletes"
                )
            if member.report.held:
                log.warning("member.held", member=member.config.name, reason=member.report.held)

    def _record(self, readout: Mapping[NodeKey, str], difference: Difference) -> dict[NodeKey, str]:
        """The nodes of one record (as ``compare`` groups them) in ``readout``."""
        return {
            key: value
            for key, value in readout.items()
            if key[0] == difference.global_name
            and record_key(key[0], key[1], self.index_globals) == difference.key
        }

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
        if uses_irissecurity(result):
            # IRIS 2025.2+: OAuth2 lives under ^SECURITY; find the layout and check %All first.
            name = member.config.name
            discovery = self._retrying(
                member,
                "^SECURITY discovery",
                lambda: parse_security_discovery(
                    member.terminal.execute(scripts.security_discover, what="^SECURITY discovery"),
                    f"{name}: ^SECURITY discovery",
                ),
            )
            if isinstance(discovery, Exception):
                self._fail(member, discovery)
                return
            problem = privilege_problem(name, discovery)
            if problem is not None:
                member.report.status = MemberStatus.ERROR
                member.report.error = problem
                log.error("member.privileges", member=name, error=problem)
                return
            member.security = discovery
        member.layout = detect_layout(result, member.security)
        log.info(
            "member.probe",
            member=member.config.name,
            role=result.role.value,
            version=result.version,
            mirror_status=result.status,
            layout=member.layout.value,
        )

    def _choose_primary(self, report: MirrorReport, members: list[_Member]) -> _Member | None:
        probed = [m for m in members if m.probe is not None and m.report.status is None]
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
        self.primary_plan = self._own_plan(primary)
        for member in probed:
            if member is not primary and member.probe is not None:
                self._check_target(primary, member, member.probe)
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
        primary = primaries[0]
        said = primary.probe.mirror_name if primary.probe else ""
        if said != self.mirror.name:
            return (
                f"the primary {primary.config.name} belongs to mirror {said or '(none)'!r}, "
                f"not {self.mirror.name!r} as configured: check the member addresses; "
                "nothing was written"
            )
        if primary.layout == StorageLayout.SECURITY_MIXED:
            return (
                f'the primary {primary.config.name} holds both a ^SECURITY("OAuth2") subtree and '
                '^SECURITY("OAuth2.*") subscripts: mirrorsync does not know which one IRIS uses '
                "and touches neither; nothing was written"
            )
        return None

    def _check_target(self, primary: _Member, member: _Member, probe: Probe) -> None:
        """Mark members that must not be touched (not a member, incompatible version/layout)."""
        if member.report.role == Role.NOT_MEMBER:
            member.report.status = MemberStatus.ERROR
            member.report.error = "not a mirror member ($SYSTEM.Mirror.IsMember()=0); not touched"
            return
        # Failover members name their mirror; async members report "" (facts §5), so only the
        # failover pair can be checked this way.
        if probe.is_member == 1 and probe.mirror_name != self.mirror.name:
            member.report.status = MemberStatus.ERROR
            member.report.error = (
                f"belongs to mirror {probe.mirror_name or '(none)'!r}, not {self.mirror.name!r} "
                "as configured; not touched"
            )
            return
        assert primary.probe is not None
        assert primary.layout is not None
        assert member.layout is not None
        refusal = pair_refusal(
            primary.config.name,
            primary.probe,
            primary.layout,
            member.config.name,
            probe,
            member.layout,
            # Comparing a newer primary with an older member writes nothing: only a sync
            # (or plan of one) needs the rolling-upgrade guard.
            allow_newer_to_older=self.config.iris.allow_newer_to_older or self.action == "drift",
        )
        if refusal is not None:
            member.report.status = MemberStatus.ERROR
            member.report.error = refusal + "; not touched"

    # ---------------------------------------------------------------- item plans
    def _own_plan(self, member: _Member) -> ItemPlan:
        """The items this member holds in its own layout (the primary's plan is built so)."""
        layout = member.layout or StorageLayout.CLASSIC
        return plan_for(layout, self.names, member.security, self.wanted)

    def _plan(self, member: _Member) -> ItemPlan:
        """What to read, export and import on ``member``: the primary's items plus the member's
        own (so records only the member has are seen), in the primary's layout."""
        primary_plan = self.primary_plan or self._own_plan(member)
        if not primary_plan.on_security:
            return primary_plan
        own = self._own_plan(member).names if member.security is not None else ()
        return primary_plan.with_names(sorted({*primary_plan.names, *own}))

    def _items_present(self, member: _Member) -> list[str]:
        """Items (global names or ^SECURITY subscripts) that hold data in ``member.readout``."""
        plan = self._plan(member)
        if plan.layout == StorageLayout.SECURITY_NESTED:
            return [NESTED_ROOT] if member.readout else []
        present = {key[0] for key in member.readout}
        return [name for name in plan.names if name in present]

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
        plan = self._plan(member)
        if not plan.names:
            return {}

        def read() -> dict[NodeKey, str]:
            payload = member.terminal.execute(plan.readout(), what="read-out")
            nodes = parse_readout(payload, plan.names, f"{member.config.name}: read-out")
            return logical_readout(nodes) if plan.on_security else nodes

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
        # Issue 5: field-level details and index coherence for the report (never raises).
        member.report.explanation = explain_member(
            self.config, self.mirror.name, primary.readout, member.readout, member.report.version
        )
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
                remote_dir = self._private_remote_dir(primary)
                export = self._export_to_snapshot(
                    primary, self._items_present(primary), remote_dir, local_dir, PRIMARY_EXPORT
                )
            except MirrorsyncError as exc:
                report.refusal = f"export on the primary {primary.config.name} failed: {exc}"
                for member in targets:
                    member.report.status = MemberStatus.ERROR
                    member.report.error = "not synced: the export failed"
                return
            self._parallel(targets, lambda m: self._import(primary, m, export, local_dir))
        finally:
            if remote_dir is not None:
                self._cleanup(primary, remote_dir)
            shutil.rmtree(local_dir, ignore_errors=True)

    def _export_to_snapshot(
        self, member: _Member, names: list[str], remote_dir: str, local_dir: Path, kind: str
    ) -> Snapshot:
        """Export ``names`` on ``member`` and keep the file as a snapshot.

        The member is live: a read-out taken after the export must equal the one taken before
        it, so the file holds exactly ``member.readout`` (retried a few times otherwise).
        """
        remote_path = f"{remote_dir}/{kind}.xml"
        local_file = local_dir / f"{member.config.name}-{kind}.xml"
        if not names:
            return self.snapshots.create(
                mirror=self.mirror.name,
                member=member.config.name,
                kind=kind,
                run_id=self.run_id,
                readout=member.readout,
                export=None,
                layout=member.layout.value if member.layout else None,
                version=member.probe.version if member.probe else None,
            )
        for attempt in range(1, EXPORT_ATTEMPTS + 1):
            self._run_export(member, list(names), remote_path)
            member.link.chmod(remote_path, 0o600)
            after = self._read(member)
            if after == member.readout:
                break
            log.warning("member.changed_during_export", member=member.config.name, attempt=attempt)
            member.readout = after
            names = self._items_present(member)
        else:
            raise IrisError(
                f"{member.config.name} kept changing during the export; try again later"
            )
        digest = self._retrying_or_raise(
            member,
            "download",
            lambda: member.link.download(
                remote_path, local_file, timeout=self.config.ssh.transfer_timeout
            ),
        )
        snapshot = self.snapshots.create(
            mirror=self.mirror.name,
            member=member.config.name,
            kind=kind,
            run_id=self.run_id,
            readout=member.readout,
            export=local_file,
            export_sha256=digest.sha256,
            layout=member.layout.value if member.layout else None,
            version=member.probe.version if member.probe else None,
        )
        self.snapshots.prune(
            self.mirror.name,
            member.config.name,
            keep=self.config.safety.snapshot_keep,
            max_age_days=self.config.safety.snapshot_max_age_days,
        )
        log.info(
            "member.snapshot_saved",
            member=member.config.name,
            kind=kind,
            snapshot=snapshot.id,
            bytes=digest.size,
            sha256=digest.sha256,
        )
        return snapshot

    def _run_export(self, member: _Member, names: list[str], remote_path: str) -> None:
        build = self._plan(member).export(names, remote_path)
        self._retrying_or_raise(
            member, "export", lambda: member.terminal.execute(build, what="export")
        )

    def _import(self, primary: _Member, member: _Member, export: Snapshot, local_dir: Path) -> None:
        """Back the member up, import the primary's export in one transaction, verify by
        read-back; if the member is neither fully new nor fully old, restore the backup."""
        name = member.config.name
        remote_dir: str | None = None
        try:
            self._checkpoint(f"the backup of {name}")
            remote_dir = self._private_remote_dir(member)
            present = self._items_present(member)
            backup = self._export_to_snapshot(member, present, remote_dir, local_dir, MEMBER_BACKUP)
            member.report.snapshot = backup.id
            remote_path = f"{remote_dir}/{EXPORT_FILE}"
            source = export.export_file
            assert source is not None  # the primary held data, checked before the export
            self._retrying_or_raise(
                member,
                "upload",
                lambda: member.link.upload(
                    source, remote_path, timeout=self.config.ssh.transfer_timeout
                ),
            )
            load = self._plan(member).load(remote_path, present)
            self._checkpoint(f"the import on {name}")
            failure: MirrorsyncError | None = None
            try:
                # Never retried: what happened is decided by the read-back below.
                member.terminal.execute(load, what="import")
            except MirrorsyncError as exc:
                failure = exc
            self._verify_import(primary, member, backup, remote_dir, failure)
        except MirrorsyncError as exc:
            self._fail(member, exc, during_sync=True)
        finally:
            if remote_dir is not None:
                self._cleanup(member, remote_dir)

    def _verify_import(
        self,
        primary: _Member,
        member: _Member,
        backup: Snapshot,
        remote_dir: str,
        failure: MirrorsyncError | None,
    ) -> None:
        name = member.config.name
        before = member.readout
        after = self._read(member)
        member.readout = after
        if after == primary.readout:
            # The read-back decides: an import whose answer was lost (connection cut) but
            # that completed is complete.
            member.report.status = MemberStatus.SYNCED
            log.info(
                "member.synced",
                member=name,
                records=len(member.report.differences),
                answer_lost=str(failure) if failure else None,
            )
            return
        reason = (
            f"import failed: {failure}"
            if failure is not None
            else "read-back after the import differs from the primary"
        )
        member.report.status = MemberStatus.ERROR
        if after == before:
            member.report.error = f"{reason}; the member is unchanged (verified by read-back)"
            log.error("member.import_failed", member=name, outcome="unchanged", reason=reason)
            return
        # Neither old nor new (the Load was not rolled back): put the backup back.
        log.error("member.import_failed", member=name, outcome="restoring", reason=reason)
        restored = self._restore_snapshot(member, backup, remote_dir)
        if restored:
            member.report.error = (
                f"{reason}; restored from snapshot {backup.id} (verified by read-back)"
            )
        else:
            member.report.error = (
                f"{reason}; RESTORE OF SNAPSHOT {backup.id} FAILED: the member matches neither "
                f"its old state nor the primary; restore it with `mirrorsync restore --member "
                f"{name} --snapshot {backup.id}`"
            )

    def _restore_snapshot(self, member: _Member, snapshot: Snapshot, remote_dir: str) -> bool:
        """Put ``snapshot`` back on ``member``; True when the read-back equals it."""
        snapshot.verify()
        expected = snapshot.readout()
        kill = self._items_present(member)
        plan = self._plan(member)
        source = snapshot.export_file
        try:
            if source is not None:
                remote_path = f"{remote_dir}/restore-{snapshot.id}.xml"
                self._retrying_or_raise(
                    member,
                    "upload",
                    lambda: member.link.upload(
                        source, remote_path, timeout=self.config.ssh.transfer_timeout
                    ),
                )
                member.terminal.execute(plan.load(remote_path, kill), what="restore")
            elif kill:
                member.terminal.execute(plan.kill(kill), what="restore")
        except MirrorsyncError as exc:
            log.error("member.restore_failed", member=member.config.name, error=str(exc))
        member.readout = self._read(member)
        ok = member.readout == expected
        log.log(
            logging.INFO if ok else logging.ERROR,
            "member.restored" if ok else "member.restore_mismatch",
            member=member.config.name,
            snapshot=snapshot.id,
        )
        return ok

    # ---------------------------------------------------------------- helpers
    def _private_remote_dir(self, member: _Member) -> str:
        return self._retrying_or_raise(
            member,
            "make remote directory",
            lambda: member.link.make_private_dir(self.mirror.remote_tmp_dir, self._prefix),
        )

    @property
    def _prefix(self) -> str:
        return f"mirrorsync-{self.mirror.name}-"

    def _clean_leftovers(self, members: list[_Member]) -> None:
        """Remove work directories that killed runs left behind (remote and local)."""
        stale_after = self.config.safety.stale_after
        local = self.config.state_dir / "tmp"
        for leftover in local.glob("run-*") if local.is_dir() else []:
            if time.time() - leftover.stat().st_mtime > stale_after:
                shutil.rmtree(leftover, ignore_errors=True)

        def clean(member: _Member) -> None:
            try:
                stale = member.link.stale_private_dirs(
                    self.mirror.remote_tmp_dir, self._prefix, stale_after
                )
            except MirrorsyncError as exc:
                log.warning(
                    "member.leftover_scan_failed", member=member.config.name, error=str(exc)
                )
                return
            for path in stale:
                log.info("member.leftover_removed", member=member.config.name, path=path)
                self._cleanup(member, path)

        self._parallel([m for m in members if m.probe is not None], clean)

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
    *,
    allow_deletes: bool = False,
) -> list[MirrorReport]:
    """Run ``action`` ("drift", "plan" or "sync") over each mirror in turn."""
    reports = []
    for mirror in mirrors:
        run = MirrorRun(config, mirror, connector, allow_deletes=allow_deletes)
        if action == "sync":
            reports.append(run.sync())
        elif action == "plan":
            reports.append(run.plan())
        else:
            reports.append(run.drift())
    return reports

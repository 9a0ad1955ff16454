"""``mirrorsync doctor``: check, read-only, every assumption mirrorsync makes about a real mirror.

Each check ends PASS, FAIL or UNKNOWN with a detail and advice. Nothing here writes OAuth2 data:
the only IRIS writes are to the scratch global ``^mirrorsync.doctor`` (created and killed by one
ObjectScript line, killed again from Python whatever happened), and the only files are an export
in a private 0700 remote directory that is removed afterwards. The JSON form is meant to be
pasted into a bug report: versions and ``$ZV``, never a host name, user name, value or secret.
"""

from __future__ import annotations

import contextlib
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mirrorsync import __version__
from mirrorsync.config.model import ITEM_GROUP_CLASSES, Config, MemberConfig, MirrorConfig
from mirrorsync.core.engine import MemberLink
from mirrorsync.errors import (
    AuthenticationError,
    HostKeyError,
    IrisLoginError,
    MirrorsyncError,
    ProtocolError,
)
from mirrorsync.iris import mapping, scripts
from mirrorsync.iris.frames import decode_b64
from mirrorsync.iris.layout import (
    SecurityDiscovery,
    StorageLayout,
    detect_layout,
    flat_candidates,
    parse_security_discovery,
    plan_for,
    privilege_problem,
    uses_irissecurity,
)
from mirrorsync.iris.results import Probe, Role, parse_discovery, parse_probe, parse_readout
from mirrorsync.iris.terminal import IrisTerminal, terminal_for

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_UNKNOWN = 2
"""Nothing failed but something could not be decided (same number as ``drift``: look at it)."""

SCRATCH_FILE = "doctor-scratch.xml"
ITEMS_FILE = "doctor-items.xml"


class Status(StrEnum):
    """The verdict on one assumption."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Check:
    """One assumption checked: a stable id, the verdict, what was seen and what to do."""

    id: str
    status: Status
    detail: str
    advice: str = ""

    def to_json(self) -> dict[str, str]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "status": self.status.value,
            "detail": self.detail,
            "advice": self.advice,
        }


@dataclass
class MemberResult:
    """The checks of one member and what it said about itself."""

    name: str
    role: str | None = None
    version: str | None = None
    zv: str | None = None
    layout: str | None = None
    login: str = ""
    checks: list[Check] = field(default_factory=list)
    probe: Probe | None = None
    security: SecurityDiscovery | None = None
    locations: dict[str, mapping.GlobalLocation] | None = None

    def add(self, check_id: str, status: Status, detail: str, advice: str = "") -> Check:
        """Record a check."""
        check = Check(check_id, status, detail, advice)
        self.checks.append(check)
        return check

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (no host, no user names)."""
        return {
            "name": self.name,
            "role": self.role,
            "version": self.version,
            "zv": self.zv,
            "layout": self.layout,
            "login": self.login,
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass
class MirrorResult:
    """The checks of one mirror: mirror-wide ones and each member's."""

    name: str
    checks: list[Check] = field(default_factory=list)
    members: list[MemberResult] = field(default_factory=list)

    def all_checks(self) -> list[Check]:
        """Mirror-wide and member checks together."""
        return self.checks + [c for m in self.members for c in m.checks]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "checks": [c.to_json() for c in self.checks],
            "members": [m.to_json() for m in self.members],
        }


@dataclass
class DoctorReport:
    """Everything doctor found, for every selected mirror."""

    mirrors: list[MirrorResult]

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        counts = {status.value: 0 for status in Status}
        for mirror in self.mirrors:
            for check in mirror.all_checks():
                counts[check.status.value] += 1
        return counts

    @property
    def outcome(self) -> Status:
        """FAIL if anything failed, else UNKNOWN if anything is undecided, else PASS."""
        counts = self.counts()
        if counts["FAIL"]:
            return Status.FAIL
        if counts["UNKNOWN"]:
            return Status.UNKNOWN
        return Status.PASS

    @property
    def exit_code(self) -> int:
        """0 all PASS, 1 any FAIL, 2 no FAIL but at least one UNKNOWN."""
        return {Status.PASS: EXIT_PASS, Status.FAIL: EXIT_FAIL, Status.UNKNOWN: EXIT_UNKNOWN}[
            self.outcome
        ]

    def to_json(self) -> dict[str, Any]:
        """The document ``--format json`` prints (paste it into a bug report)."""
        return {
            "tool": "mirrorsync doctor",
            "mirrorsync_version": __version__,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "mirrors": [m.to_json() for m in self.mirrors],
        }

    def render_text(self) -> str:
        """Human form: one line per check, advice indented under it; last line the outcome."""
        lines = [f"mirrorsync doctor {__version__}"]
        for mirror in self.mirrors:
            lines.append(f"mirror {mirror.name}")
            lines.extend(_check_lines(mirror.checks, "  "))
            for member in mirror.members:
                about = ", ".join(
                    part
                    for part in (
                        member.role,
                        f"IRIS {member.version}" if member.version else None,
                        member.layout,
                    )
                    if part
                )
                lines.append(f"  {member.name}" + (f" ({about})" if about else ""))
                if member.zv:
                    lines.append(f"    $ZV: {_printable(member.zv)}")
                lines.extend(_check_lines(member.checks, "    "))
        counts = self.counts()
        lines.append(
            f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['UNKNOWN']} unknown"
        )
        lines.append(self.outcome.value)
        return "\n".join(lines)


def _printable(text: str) -> str:
    """Control characters as ``\\xNN`` so IRIS text cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _check_lines(checks: Sequence[Check], indent: str) -> list[str]:
    lines = []
    for check in checks:
        lines.append(f"{indent}{check.status.value:8} {check.id:26} {_printable(check.detail)}")
        if check.advice and check.status != Status.PASS:
            lines.append(f"{indent}{'':8} {'':26} -> {_printable(check.advice)}")
    return lines


Connector = Callable[[MemberConfig], MemberLink]


class Doctor:
    """Runs every check over one mirror (members in parallel, primary checks after)."""

    def __init__(self, config: Config, mirror: MirrorConfig, connector: Connector) -> None:
        """Bind the configuration and how members are reached."""
        self.config = config
        self.mirror = mirror
        self.connector = connector
        self.names = config.items.global_names()
        self.classes = [ITEM_GROUP_CLASSES[g] for g in config.items.groups]

    def run(self, only_member: str | None = None) -> MirrorResult:
        """All checks; with ``only_member`` the per-member checks of that member only (and the
        primary's item checks if it is the primary; the mirror-wide checks are skipped)."""
        configs = [m for m in self.mirror.members if only_member in (None, m.name)]
        result = MirrorResult(self.mirror.name)
        links: dict[str, MemberLink] = {}
        terminals: dict[str, IrisTerminal] = {}
        members = [MemberResult(c.name) for c in configs]
        result.members = members
        try:

            def one(pair: tuple[MemberConfig, MemberResult]) -> None:
                config, member = pair
                link = self.connector(config)
                links[config.name] = link
                terminal = self._terminal(config, link)
                terminals[config.name] = terminal
                self._member_checks(config, member, link, terminal)

            with ThreadPoolExecutor(max_workers=max(1, min(8, len(configs)))) as pool:
                list(pool.map(one, zip(configs, members, strict=True)))
            if only_member is None:
                self._mirror_checks(result)
            primary = next((m for m in members if m.role == Role.PRIMARY.value), None)
            if primary is not None and primary.probe is not None:
                self._primary_checks(primary, links[primary.name], terminals[primary.name])
        finally:
            for link in links.values():
                with contextlib.suppress(MirrorsyncError):
                    link.close()
        return result

    # ------------------------------------------------------------------ per member
    def _terminal(self, config: MemberConfig, link: MemberLink) -> IrisTerminal:
        return terminal_for(self.config, config, link)

    def _member_checks(
        self, config: MemberConfig, member: MemberResult, link: MemberLink, terminal: IrisTerminal
    ) -> None:
        if not self._check_ssh(member, link):
            return
        if not self._check_session(config, member, terminal):
            return
        self._check_layout(member, terminal)
        self._check_mapping(member, terminal)
        scratch_ok = self._check_scratch(member, link, terminal)
        self._check_privileges(member, terminal, scratch_ok)

    def _check_ssh(self, member: MemberResult, link: MemberLink) -> bool:
        connect = getattr(link, "connect", None)
        try:
            if connect is not None:
                connect()
            else:  # a link without an explicit connect: any command proves the connection
                link.run(("true",), timeout=self.config.ssh.command_timeout)
        except HostKeyError as exc:
            member.add(
                "ssh",
                Status.FAIL,
                f"host key refused: {exc}",
                "compare the fingerprint out of band, then `mirrorsync hostkeys trust -c FILE "
                f"--member {member.name}`",
            )
            return False
        except AuthenticationError as exc:
            member.add(
                "ssh",
                Status.FAIL,
                f"SSH login refused: {exc}",
                "put mirrorsync's public key in the member's authorized_keys for the configured "
                "user",
            )
            return False
        except MirrorsyncError as exc:
            member.add(
                "ssh",
                Status.FAIL,
                f"cannot connect: {exc}",
                "check host, port, firewall and jump host in the config",
            )
            return False
        member.add("ssh", Status.PASS, "connected; the host key matches the pinned known_hosts")
        return True

    def _check_session(
        self, config: MemberConfig, member: MemberResult, terminal: IrisTerminal
    ) -> bool:
        try:
            # What the terminal itself does (it is asked, not assumed from the config).
            asks = terminal.asks_login()
        except MirrorsyncError as exc:
            member.add(
                "iris-session",
                Status.FAIL,
                f"`iris session` could not be started: {exc}",
                "check iris_command, instance and sudo_user",
            )
            return False
        member.login = "password" if asks else "os"
        how = (
            "password login (the terminal asks; iris.credentials answer it)"
            if asks
            else "OS authentication (no prompt)"
        )
        if config.sudo_user:
            how += ", through sudo -n -u the configured instance owner"
        try:
            probe = parse_probe(
                terminal.execute(scripts.probe, what="probe"), f"{member.name}: probe"
            )
        except IrisLoginError as exc:
            member.add(
                "iris-session",
                Status.FAIL,
                f"{how}: {exc}",
                "check iris.credentials (or enable OS authentication for the SSH user)",
            )
            return False
        except MirrorsyncError as exc:
            member.add(
                "iris-session",
                Status.FAIL,
                f"{how}: {exc}",
                "run `iris session INSTANCE -U %SYS` on the member as the SSH user; check "
                "iris_command, instance, sudo_user and that OS authentication does not prompt",
            )
            return False
        member.probe = probe
        member.role = probe.role.value
        member.version = probe.version
        member.zv = probe.zv
        member.add(
            "iris-session",
            Status.PASS,
            f"`iris session` answered in namespace {probe.namespace}; {how}",
        )
        return True

    def _check_layout(self, member: MemberResult, terminal: IrisTerminal) -> None:
        probe = member.probe
        assert probe is not None
        if not uses_irissecurity(probe):
            member.layout = StorageLayout.CLASSIC.value
            member.add(
                "version-layout",
                Status.PASS,
                f"IRIS {probe.version}: OAuth2 in ^OAuth2.* globals in IRISSYS (classic)",
            )
            return
        try:
            member.security = parse_security_discovery(
                terminal.execute(scripts.security_discover, what="^SECURITY discovery"),
                f"{member.name}: ^SECURITY discovery",
            )
        except MirrorsyncError as exc:
            member.add(
                "version-layout",
                Status.UNKNOWN,
                f"IRIS {probe.version} keeps OAuth2 under ^SECURITY, but listing it failed: {exc}",
                "see the privileges check",
            )
            return
        layout = detect_layout(probe, member.security)
        member.layout = layout.value
        found = ", ".join(sorted(member.security.subscripts)) or "none"
        detail = (
            f"IRIS {probe.version}: ^SECURITY layout {layout.value} (OAuth2 subscripts: {found})"
        )
        if layout == StorageLayout.SECURITY_MIXED:
            member.add(
                "version-layout",
                Status.FAIL,
                detail,
                "both layouts at once: please report this output (facts §6.2 is unresolved)",
            )
        elif layout == StorageLayout.SECURITY_EMPTY:
            member.add(
                "version-layout",
                Status.UNKNOWN,
                detail,
                "no OAuth2 data yet, so the layout cannot be told; run doctor again once "
                "a client exists",
            )
        else:
            member.add("version-layout", Status.PASS, detail)

    def _check_mapping(self, member: MemberResult, terminal: IrisTerminal) -> None:
        probe = member.probe
        assert probe is not None
        if not mapping.applies_to(probe):
            member.add(
                "oauth2-location",
                Status.PASS,
                f"IRIS {probe.version}: IRISSECURITY cannot be mirrored and OAuth2 globals "
                "cannot be mapped (facts §6.2-6.3)",
            )
            return
        try:
            member.locations = mapping.read_locations(terminal, self.names)
        except MirrorsyncError as exc:
            member.add(
                "oauth2-location",
                Status.UNKNOWN,
                f"could not ask where the globals live: {exc}",
                'run `write ##class(%SYS.Namespace).GetGlobalDest("%SYS","^OAuth2.Server.'
                'ClientD")` in %SYS and report the output (API name ASSUMED from Caché sources)',
            )
            return
        located = list(member.locations.values())
        mirrored = [loc for loc in located if loc.mirroring == mapping.Mirroring.MIRRORED]
        undecided = [
            loc
            for loc in located
            if loc.mirroring in (mapping.Mirroring.REMOTE, mapping.Mirroring.UNKNOWN)
        ]
        where = "; ".join(sorted({f"{loc.directory or '?'}" for loc in located}))
        if undecided:
            member.add(
                "oauth2-location",
                Status.UNKNOWN,
                "; ".join(loc.describe() for loc in undecided),
                "a remote (ECP) or unopenable database: mirrorsync assumes it is not mirrored",
            )
        elif mirrored:
            member.add(
                "oauth2-location",
                Status.PASS,
                "mapped to a mirrored database: "
                + "; ".join(loc.describe() for loc in mirrored)
                + ". mirrorsync leaves these globals to mirroring (not synced)",
            )
        else:
            member.add(
                "oauth2-location",
                Status.PASS,
                f"no configured global is in a mirrored database (databases: {where})",
            )

    def _check_scratch(
        self, member: MemberResult, link: MemberLink, terminal: IrisTerminal
    ) -> bool:
        """Export/Load semantics on ^mirrorsync.doctor; the global is killed whatever happens."""
        remote_dir: str | None = None
        local_dir = Path(tempfile.mkdtemp(prefix="mirrorsync-doctor-"))
        fields: dict[str, str] = {}
        error: str | None = None
        try:
            remote_dir = link.make_private_dir(self.mirror.remote_tmp_dir, "mirrorsync-doctor-")
            path = f"{remote_dir}/{SCRATCH_FILE}"
            payload = terminal.execute(
                lambda token: scripts.doctor_scratch(token, path), what="scratch Export/Load"
            )
            fields = _scratch_fields(payload, member.name)
            tags = self._export_tags(link, path, local_dir) if fields.get("EXPORT") == "1" else None
        except MirrorsyncError as exc:
            error = str(exc)
            tags = None
        finally:
            cleanup = self._kill_scratch(member, terminal)
            if remote_dir is not None:
                with contextlib.suppress(MirrorsyncError):
                    link.remove_private_dir(remote_dir)
            shutil.rmtree(local_dir, ignore_errors=True)
        self._report_scratch(member, fields, error, tags)
        member.checks.append(cleanup)
        return cleanup.status == Status.PASS and error is None and fields.get("EXPORT") == "1"

    def _export_tags(self, link: MemberLink, path: str, local_dir: Path) -> set[str] | str:
        """Element names in the scratch export (it holds no OAuth2 data), or why not read."""
        local = local_dir / SCRATCH_FILE
        try:
            link.download(path, local, timeout=self.config.ssh.transfer_timeout)
        except MirrorsyncError as exc:
            return f"could not download the scratch export: {exc}"
        text = local.read_bytes().decode("utf-8", errors="replace")
        return set(re.findall(r"<([A-Za-z][A-Za-z0-9_.]*)", text))

    def _kill_scratch(self, member: MemberResult, terminal: IrisTerminal) -> Check:
        """Kill ^mirrorsync.doctor again and prove it is gone (the Python half of try/finally)."""
        try:
            terminal.execute(
                lambda token: scripts.kill_globals(token, [scripts.SCRATCH_GLOBAL]),
                what="scratch clean-up",
            )
            found = parse_discovery(
                terminal.execute(
                    lambda token: scripts.discover(token, [scripts.SCRATCH_GLOBAL]),
                    what="scratch clean-up check",
                ),
                f"{member.name}: scratch clean-up check",
            )
        except MirrorsyncError as exc:
            return Check(
                "scratch-cleanup",
                Status.FAIL,
                f"could not verify that ^{scripts.SCRATCH_GLOBAL} is gone: {exc}",
                f"in %SYS run `kill ^{scripts.SCRATCH_GLOBAL}` (it holds only doctor's test data)",
            )
        if found.data.get(scripts.SCRATCH_GLOBAL, 0):
            return Check(
                "scratch-cleanup",
                Status.FAIL,
                f"^{scripts.SCRATCH_GLOBAL} still exists after its kill",
                f"in %SYS run `kill ^{scripts.SCRATCH_GLOBAL}`",
            )
        return Check("scratch-cleanup", Status.PASS, f"^{scripts.SCRATCH_GLOBAL} killed and gone")

    def _report_scratch(
        self,
        member: MemberResult,
        fields: dict[str, str],
        error: str | None,
        tags: set[str] | str | None,
    ) -> None:
        not_run = "not run: the scratch test did not get that far"
        if error is not None or fields.get("EXPORT") != "1":
            why = error or f"Export failed: {fields.get('EXPORT_ERROR', '?')}"
            for check_id in ("scratch-load-kills", "scratch-load-transaction", "scratch-binary"):
                member.add(
                    check_id,
                    Status.FAIL if check_id == "scratch-load-kills" else Status.UNKNOWN,
                    f"{why}" if check_id == "scratch-load-kills" else not_run,
                    "check that the IRIS user can write globals in the configured namespace "
                    "and files in mirror.remote_tmp_dir",
                )
            return
        load_error = fields.get("LOAD_ERROR", "")
        if fields.get("LOAD") != "1":
            member.add(
                "scratch-load-kills",
                Status.FAIL,
                f"$SYSTEM.OBJ.Load of the scratch export failed: {load_error}",
                "mirrorsync imports with the same call; fix this first",
            )
        elif fields.get("KILL") == "1":
            member.add(
                "scratch-load-kills",
                Status.PASS,
                'Load(file,"-d") killed ^mirrorsync.doctor before setting it (the extra node '
                "is gone)",
            )
        else:
            member.add(
                "scratch-load-kills",
                Status.FAIL,
                'Load(file,"-d") MERGED into ^mirrorsync.doctor: the extra node survived '
                "(/mergeglobal is a default here)",
                "mirrorsync kills the item globals itself before Load, inside the import "
                "transaction; nodes a sync should delete are still deleted, but report this",
            )
        if fields.get("ROLLBACK") == "1" and fields.get("TXLOAD") == "1":
            member.add(
                "scratch-load-transaction",
                Status.PASS,
                "TSTART, Load, TROLLBACK left ^mirrorsync.doctor as before the Load",
            )
        else:
            member.add(
                "scratch-load-transaction",
                Status.FAIL,
                "TROLLBACK did not undo what Load wrote inside the transaction"
                if fields.get("TXLOAD") == "1"
                else "Load failed inside a transaction",
                "a failed import cannot rely on rollback here: mirrorsync restores the member's "
                "snapshot after a bad read-back; keep safety.snapshot_keep > 0",
            )
        self._report_binary(member, fields, tags)

    def _report_binary(
        self, member: MemberResult, fields: dict[str, str], tags: set[str] | str | None
    ) -> None:
        if isinstance(tags, str) or tags is None:
            seen = tags or "export not read"
        else:
            extra = sorted(tags - {"Export", "Global", "Node", "Sub", "Data", "?xml"})
            seen = (
                "elements for control characters: " + ", ".join(extra)
                if extra
                else "no element besides Export/Global/Node/Sub/Data"
            )
        if fields.get("ROUNDTRIP") == "1":
            member.add(
                "scratch-binary",
                Status.PASS,
                f"a $LIST value and a subscript with $C(1,2) survived Export+Load; {seen}",
            )
        else:
            member.add(
                "scratch-binary",
                Status.FAIL,
                f"a $LIST value or a binary subscript did NOT survive Export+Load; {seen}",
                "do not sync with this IRIS: OAuth2 records are $LIST values; please report this",
            )

    def _check_privileges(
        self, member: MemberResult, terminal: IrisTerminal, scratch_ok: bool
    ) -> None:
        probe = member.probe
        assert probe is not None
        if member.security is not None:
            problem = privilege_problem(member.name, member.security)
            if problem is None:
                member.add("privileges", Status.PASS, "^SECURITY is readable directly (%All)")
            else:
                member.add(
                    "privileges",
                    Status.FAIL,
                    problem,
                    "grant %All to the IRIS user mirrorsync logs in as",
                )
            return
        try:
            fields = dict(
                line.partition(" ")[::2] for line in terminal.execute(scripts.whoami, what="roles")
            )
            roles = decode_b64(fields.get("ROLES", "").strip())
        except (MirrorsyncError, ValueError) as exc:
            member.add("privileges", Status.UNKNOWN, f"could not read $ROLES: {exc}")
            return
        role_list = [r for r in roles.split(",") if r]
        if "%All" in role_list:
            member.add("privileges", Status.PASS, "the IRIS user has %All")
        elif scratch_ok:
            member.add(
                "privileges",
                Status.PASS,
                f"no %All (roles: {', '.join(role_list) or 'none'}), but Export and Load of a "
                "global in the configured namespace work",
            )
        else:
            member.add(
                "privileges",
                Status.FAIL,
                f"roles: {', '.join(role_list) or 'none'}; Export/Load in the namespace failed",
                "give the IRIS user read/write on IRISSYS (%DB_IRISSYS) or %All",
            )

    # ------------------------------------------------------------------ mirror wide
    def _mirror_checks(self, result: MirrorResult) -> None:
        probed = [m for m in result.members if m.probe is not None]
        missing = [m.name for m in result.members if m.probe is None]
        primaries = [m.name for m in probed if m.role == Role.PRIMARY.value]
        transition = [m.name for m in probed if m.role == Role.TRANSITION.value]
        roles = ", ".join(f"{m.name}={m.role}" for m in probed) or "none"
        if transition or len(primaries) > 1:
            result.checks.append(
                Check(
                    "mirror-roles",
                    Status.FAIL,
                    f"roles: {roles}",
                    "mirrorsync writes nothing while a member is in transition or two members "
                    "are primary; wait for the mirror to settle",
                )
            )
        elif not primaries:
            result.checks.append(
                Check(
                    "mirror-roles",
                    Status.FAIL if not missing else Status.UNKNOWN,
                    f"no primary among the reachable members (roles: {roles})"
                    + (f"; not reached: {', '.join(missing)}" if missing else ""),
                    "check the mirror in the Management Portal; every member must be configured",
                )
            )
        else:
            check_status = Status.UNKNOWN if missing else Status.PASS
            detail = f"exactly one primary ({primaries[0]}); roles: {roles}"
            if missing:
                detail += f"; not reached: {', '.join(missing)}"
            result.checks.append(Check("mirror-roles", check_status, detail))
        layouts = {m.layout for m in probed if m.layout}
        versions = {m.version for m in probed if m.version}
        if len(layouts) > 1:
            result.checks.append(
                Check(
                    "mirror-versions",
                    Status.FAIL,
                    "members store OAuth2 differently: "
                    + ", ".join(f"{m.name}={m.layout} (IRIS {m.version})" for m in probed),
                    "a rolling upgrade: mirrorsync refuses to copy between layouts; finish the "
                    "upgrade of every member",
                )
            )
        else:
            result.checks.append(
                Check(
                    "mirror-versions",
                    Status.PASS,
                    f"IRIS {', '.join(sorted(v for v in versions if v)) or '?'}, one layout "
                    f"({', '.join(sorted(layouts)) or '?'})",
                )
            )
        self._mapping_consistency(result, probed)

    def _mapping_consistency(self, result: MirrorResult, probed: list[MemberResult]) -> None:
        answers: dict[str, dict[str, mapping.GlobalLocation] | MirrorsyncError] = {
            m.name: m.locations for m in probed if m.locations is not None
        }
        if not answers:
            return
        decided = mapping.exclusions(self.names, answers)
        inconsistent = [w for w in decided.warnings if "NOT in a mirrored database" in w]
        if inconsistent:
            result.checks.append(
                Check(
                    "mirror-mapping",
                    Status.FAIL,
                    "; ".join(inconsistent),
                    "map the OAuth2 globals the same way on every member",
                )
            )
        elif decided.excluded:
            result.checks.append(
                Check(
                    "mirror-mapping",
                    Status.PASS,
                    "in a mirrored database on every member, left to mirroring: "
                    + ", ".join("^" + n for n in decided.excluded),
                )
            )
        else:
            result.checks.append(
                Check("mirror-mapping", Status.PASS, "no configured global is mirrored")
            )

    # ------------------------------------------------------------------ primary
    def _primary_checks(
        self, primary: MemberResult, link: MemberLink, terminal: IrisTerminal
    ) -> None:
        probe = primary.probe
        assert probe is not None
        names = list(self.names)
        if primary.locations is not None:
            excluded = {
                n
                for n, loc in primary.locations.items()
                if loc.mirroring == mapping.Mirroring.MIRRORED
            }
            names = [n for n in names if n not in excluded]
        plan = plan_for(
            detect_layout(probe, primary.security),
            names,
            primary.security,
            flat_candidates(self.classes, self.config.items.extra_globals),
        )
        if not plan.names:
            primary.add(
                "items-present",
                Status.UNKNOWN,
                "nothing to read: every configured item is mirrored or no OAuth2 subtree exists",
            )
            return
        try:
            readout = parse_readout(
                terminal.execute(plan.readout(), what="read-out"),
                plan.names,
                f"{primary.name}: read-out",
            )
        except MirrorsyncError as exc:
            primary.add("items-present", Status.FAIL, f"read-out failed: {exc}")
            return
        counts: dict[str, int] = {}
        for name, _ in readout:
            counts[name] = counts.get(name, 0) + 1
        present = [n for n in plan.names if counts.get(n)]
        summary = ", ".join(f"{n}: {counts[n]} node(s)" for n in present) or "none"
        if not present:
            primary.add(
                "items-present",
                Status.FAIL,
                f"the primary holds none of the configured items ({', '.join(plan.names)})",
                "check items.groups / items.extra_globals (names are case-sensitive); a sync "
                "refuses to empty the other members",
            )
            return
        primary.add("items-present", Status.PASS, f"on the primary: {summary}")
        self._check_export(primary, link, terminal, plan.export, present)

    def _check_export(
        self,
        primary: MemberResult,
        link: MemberLink,
        terminal: IrisTerminal,
        build: Callable[[Sequence[str], str], Callable[[str], str]],
        present: list[str],
    ) -> None:
        remote_dir: str | None = None
        try:
            remote_dir = link.make_private_dir(self.mirror.remote_tmp_dir, "mirrorsync-doctor-")
            path = f"{remote_dir}/{ITEMS_FILE}"
            terminal.execute(build(present, path), what="export")
            # Not downloaded: it holds secrets. Its size on the member is enough here.
            result = link.run(("test", "-s", path), timeout=self.config.ssh.command_timeout)
            if result.exit_status != 0:
                raise ProtocolError(f"Export reported success but {ITEMS_FILE} is missing or empty")
            primary.add(
                "export-items",
                Status.PASS,
                f"$SYSTEM.OBJ.Export of {len(present)} item(s) into a private directory worked "
                "(file removed)",
            )
        except MirrorsyncError as exc:
            primary.add(
                "export-items",
                Status.FAIL,
                f"export failed: {exc}",
                "check that the IRIS process can write into mirror.remote_tmp_dir",
            )
        finally:
            if remote_dir is not None:
                with contextlib.suppress(MirrorsyncError):
                    link.remove_private_dir(remote_dir)


def _scratch_fields(payload: Sequence[str], member: str) -> dict[str, str]:
    """``KEY value`` lines of ``scripts.doctor_scratch`` (error texts decoded)."""
    fields: dict[str, str] = {}
    for line in payload:
        key, _, value = line.strip().partition(" ")
        if key not in ("EXPORT", "LOAD", "KILL", "ROUNDTRIP", "TXLOAD", "ROLLBACK"):
            raise ProtocolError(f"{member}: unexpected line in the scratch test: {line[:80]!r}")
        flag, _, text = value.partition(" ")
        fields[key] = flag
        if text.strip():
            fields[f"{key}_ERROR"] = decode_b64(text.strip())
    return fields


def run_doctor(
    config: Config,
    connector: Connector,
    *,
    mirrors: Sequence[MirrorConfig] | None = None,
    member: str | None = None,
) -> DoctorReport:
    """Run doctor over the selected mirrors (every configured one by default)."""
    selected = list(mirrors) if mirrors is not None else list(config.mirrors)
    if member is not None:
        selected = [m for m in selected if any(x.name == member for x in m.members)]
    return DoctorReport([Doctor(config, m, connector).run(member) for m in selected])

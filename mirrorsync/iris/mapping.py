"""Where a member keeps each OAuth2 global, and which globals mirroring already replicates.

Up to IRIS 2025.1 an admin could map the ``^OAuth2.*`` globals from %SYS into another database,
and if that database is mirrored, mirroring replicates them by itself ([ASECDB] §2.3: "Previously,
you could map OAuth2 globals to a different database, which allowed OAuth2 configurations to be
mirrored"). mirrorsync must then leave them alone: on a backup a mirrored database is read-only,
and on the primary a write would only race the mirror (field note 3).

How IRIS is asked (``scripts.global_locations``):

* ``##class(%SYS.Namespace).GetGlobalDest(namespace, "^"_global)`` returns ``system^directory``,
  the system empty for a local database. CONFIRMED in the Caché ~2016 sources ([CACHESRC]
  ``%SYS/Namespace.cls`` and ``getdest^%SYS.GXLINF1``); ASSUMPTION: unchanged in IRIS <= 2025.1.
  Subscript-level mappings are not looked at (the whole global's destination is used).
* ``##class(SYS.Database).%OpenId(directory).Mirrored``: CONFIRMED in the Caché sources
  ([CACHESRC] ``SYS/Database.cls``: ``Property Mirrored As %Boolean [ReadOnly]``, "Database is
  marked as mirrored", opened with ``%OpenId(Directory)``); ASSUMPTION: unchanged in IRIS.

From IRIS 2025.2 the question does not arise: OAuth2 lives in IRISSECURITY, which "cannot be
mirrored", and "OAuth2 globals can no longer be mapped" (facts §6.2, §6.3).

Pure functions plus one runner (``read_locations``); the engine decides what to do with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from mirrorsync.errors import MirrorsyncError, ProtocolError
from mirrorsync.iris import scripts
from mirrorsync.iris.frames import decode_b64
from mirrorsync.iris.results import Probe
from mirrorsync.iris.terminal import IrisTerminal

LAST_MAPPABLE_VERSION = (2025, 1)
"""OAuth2 globals can be mapped (and so mirrored) up to this version (facts §6.3)."""


class Mirroring(StrEnum):
    """What a member says about the database one global lives in."""

    MIRRORED = "mirrored"
    NOT_MIRRORED = "not-mirrored"
    REMOTE = "remote"
    """A database on another (ECP) system: not checked from here."""
    UNKNOWN = "unknown"
    """No destination, or the directory did not open as a database."""


_FLAGS = {"1": Mirroring.MIRRORED, "0": Mirroring.NOT_MIRRORED, "R": Mirroring.REMOTE}


@dataclass(frozen=True)
class GlobalLocation:
    """Where one global lives on one member."""

    name: str
    destination: str
    """As ``GetGlobalDest`` returned it, e.g. ``^/usr/irissys/mgr/``."""
    mirroring: Mirroring
    mirror_db_name: str = ""

    @property
    def directory(self) -> str:
        """The database directory (the last ``^`` piece of the destination)."""
        return self.destination.rsplit("^", 1)[-1]

    def describe(self) -> str:
        """``^NAME in /dir/ (mirrored as DB)`` for messages."""
        where = self.directory or "(no destination)"
        if self.mirroring == Mirroring.MIRRORED:
            named = f" as {self.mirror_db_name}" if self.mirror_db_name else ""
            return f"^{self.name} in {where} (mirrored database{named})"
        return f"^{self.name} in {where} ({self.mirroring.value})"


def applies_to(probe: Probe) -> bool:
    """Whether globals can be mapped on this member's version (IRIS <= 2025.1)."""
    return probe.version_tuple[:2] <= LAST_MAPPABLE_VERSION


def parse_locations(
    payload: Sequence[str], names: Sequence[str], what: str
) -> dict[str, GlobalLocation]:
    """Parse the output of ``scripts.global_locations``: one location per asked global."""
    allowed = set(names)
    found: dict[str, GlobalLocation] = {}
    for line in payload:
        parts = line.split(" ")
        if len(parts) != 5 or parts[0] != "L" or parts[1] not in allowed or parts[1] in found:
            raise ProtocolError(f"{what}: unexpected line in global locations: {line[:80]!r}")
        mirroring = _FLAGS.get(parts[3], Mirroring.UNKNOWN)
        if parts[3] not in ("1", "0", "R", "X", "N"):
            raise ProtocolError(f"{what}: unexpected mirrored flag {parts[3][:10]!r}")
        found[parts[1]] = GlobalLocation(
            parts[1], decode_b64(parts[2]), mirroring, decode_b64(parts[4])
        )
    missing = [name for name in names if name not in found]
    if missing:
        raise ProtocolError(f"{what}: no location printed for {', '.join(missing)}")
    return found


def read_locations(terminal: IrisTerminal, names: Sequence[str]) -> dict[str, GlobalLocation]:
    """Ask one member where each of ``names`` lives (raises MirrorsyncError on failure)."""
    payload = terminal.execute(
        lambda token: scripts.global_locations(token, names), what="global locations"
    )
    return parse_locations(payload, names, f"{terminal.member}: global locations")


@dataclass(frozen=True)
class Exclusions:
    """What the engine must leave to mirroring, and what to tell the operator."""

    kept: tuple[str, ...]
    """The configured globals mirrorsync still reads, compares and syncs (order preserved)."""
    excluded: tuple[str, ...]
    warnings: tuple[str, ...]


def exclusions(
    names: Sequence[str],
    locations: Mapping[str, Mapping[str, GlobalLocation] | MirrorsyncError],
) -> Exclusions:
    """Decide from every member's answer (or error) which globals to leave to mirroring.

    A global that lives in a mirrored database on ANY member is excluded for the whole mirror:
    mirroring replicates it, and on the members where it is not mirrored the mapping differs,
    which an admin must look at (the warning says so). A member that could not be asked excludes
    nothing (the previous behaviour) and is named in a warning.
    """
    mirrored_on: dict[str, list[str]] = {}
    warnings: list[str] = []
    for member, answer in locations.items():
        if isinstance(answer, MirrorsyncError):
            warnings.append(
                f"{member}: could not tell where the OAuth2 globals live ({answer}); "
                "assuming they are not in a mirrored database"
            )
            continue
        for name in names:
            location = answer.get(name)
            if location is not None and location.mirroring == Mirroring.MIRRORED:
                mirrored_on.setdefault(name, []).append(member)
    asked = [m for m, a in locations.items() if not isinstance(a, MirrorsyncError)]
    for name, members in mirrored_on.items():
        others = [m for m in asked if m not in members]
        text = (
            f"^{name} is mapped to a mirrored database on {', '.join(members)}: mirroring "
            "replicates it, so mirrorsync does not read, compare or write it"
        )
        if others:
            text += f" (on {', '.join(others)} it is NOT in a mirrored database: check the mapping)"
        warnings.append(text)
    kept = tuple(name for name in names if name not in mirrored_on)
    excluded = tuple(name for name in names if name in mirrored_on)
    return Exclusions(kept, excluded, tuple(warnings))


def check_members(
    terminals: Mapping[str, IrisTerminal], names: Sequence[str]
) -> Mapping[str, Mapping[str, GlobalLocation] | MirrorsyncError]:
    """``read_locations`` on each member in parallel, errors kept as values (for
    ``exclusions``)."""

    def ask(terminal: IrisTerminal) -> Mapping[str, GlobalLocation] | MirrorsyncError:
        try:
            return read_locations(terminal, names)
        except MirrorsyncError as exc:
            return exc

    if not terminals:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(terminals))) as pool:
        return dict(zip(terminals, pool.map(ask, terminals.values()), strict=True))


@dataclass(frozen=True)
class RunExclusions(Exclusions):
    """``Exclusions`` for one engine run, with a refusal when nothing is left to sync."""

    refusal: str | None = None


def exclude_mirrored(
    names: Sequence[str], members: Sequence[tuple[str, Probe | None, IrisTerminal]]
) -> RunExclusions:
    """The engine's entry point: ask every probed member up to 2025.1 where ``names`` live and
    leave the globals mirroring replicates out of the run (see ``exclusions``).

    ``members`` are (name, probe or None if it was not reached, terminal). When every configured
    global is mirrored there is nothing for mirrorsync to do: ``refusal`` says so (``kept`` is
    empty and the caller must not read or write anything).
    """
    terminals = {name: t for name, probe, t in members if probe is not None and applies_to(probe)}
    if not terminals or not names:
        return RunExclusions(tuple(names), (), ())
    decided = exclusions(names, check_members(terminals, names))
    refusal = None
    if not decided.kept:
        refusal = (
            "every configured OAuth2 global is in a mirrored database, which mirroring already "
            "replicates: nothing for mirrorsync to do (see the warnings)"
        )
    return RunExclusions(decided.kept, decided.excluded, decided.warnings, refusal)

"""Where a member keeps its OAuth2 data, and which scripts read, export and import it.

IRIS up to 2025.1 keeps ``^OAuth2.*`` globals in IRISSYS (facts §6.1). From 2025.2 (CD) / 2026.1
(EM) they live under ``^SECURITY`` in the IRISSECURITY database, and the public docs disagree on
how (facts §6.2): one ``^SECURITY("OAuth2.Server.ClientD",...)`` subscript per former global
(``security-flat``) or one ``^SECURITY("OAuth2",...)`` subtree (``security-nested``, what the
official recipe exports). mirrorsync does not guess: it lists the ``OAuth2*`` subscripts that
exist on each member (``scripts.security_discover``) and works on exactly those subtrees. No
other ``^SECURITY`` subscript (users, roles, ...) is ever read, exported or killed.

Pure functions only: the engine asks this module what to do and runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mirrorsync.errors import ProtocolError
from mirrorsync.iris import scripts
from mirrorsync.iris.frames import decode_b64
from mirrorsync.iris.results import NodeKey, Probe

FIRST_IRISSECURITY_VERSION = (2025, 2)
NESTED_ROOT = "OAuth2"
_SAFE_SUBSCRIPT = re.compile(r"^OAuth2(\.[A-Za-z][A-Za-z0-9]*)*$")
"""First-level subscripts mirrorsync handles: printable in a read-out line, quotable anywhere."""


class StorageLayout(StrEnum):
    """How one member stores OAuth2 data."""

    CLASSIC = "classic"
    """``^OAuth2.*D/I/S`` globals in IRISSYS (IRIS <= 2025.1)."""
    SECURITY_FLAT = "security-flat"
    """``^SECURITY("OAuth2.Server.ClientD",...)``: one subscript per former global."""
    SECURITY_NESTED = "security-nested"
    """``^SECURITY("OAuth2",...)``: one subtree, the official recipe's item."""
    SECURITY_EMPTY = "security-empty"
    """IRIS 2025.2+ without any OAuth2 subscript under ^SECURITY (nothing configured yet)."""
    SECURITY_MIXED = "security-mixed"
    """Both a ``"OAuth2"`` subtree and ``"OAuth2.*"`` subscripts: not understood, never touched."""


def uses_irissecurity(probe: Probe) -> bool:
    """Whether this IRIS version keeps OAuth2 under ^SECURITY (facts §6.2 rule)."""
    return probe.version_tuple[:2] >= FIRST_IRISSECURITY_VERSION


@dataclass(frozen=True)
class SecurityDiscovery:
    """What ``scripts.security_discover`` found on one member."""

    access: bool
    """Whether ^SECURITY could be read directly (needs %All)."""
    access_error: str | None = None
    subscripts: Mapping[str, int] = field(default_factory=dict)
    """First-level ``OAuth2*`` subscripts -> $DATA."""
    unsafe: tuple[str, ...] = ()
    """``OAuth2*`` subscripts with characters mirrorsync does not handle (reported, not synced)."""


def parse_security_discovery(payload: Sequence[str], what: str) -> SecurityDiscovery:
    """Parse the output of ``scripts.security_discover``."""
    access: bool | None = None
    error: str | None = None
    found: dict[str, int] = {}
    unsafe: list[str] = []
    for line in payload:
        parts = line.split(" ")
        if parts[0] == "ACCESS" and parts[1:2] == ["1"] and len(parts) == 2:
            access = True
        elif parts[0] == "ACCESS" and parts[1:2] == ["0"] and len(parts) == 3:
            access, error = False, decode_b64(parts[2])
        elif parts[0] == "S" and len(parts) == 3 and parts[2] in ("1", "10", "11"):
            name = decode_b64(parts[1])
            if _SAFE_SUBSCRIPT.match(name):
                found[name] = int(parts[2])
            else:
                unsafe.append(name)
        else:
            raise ProtocolError(f"{what}: unexpected line in ^SECURITY discovery: {line[:80]!r}")
    if access is None:
        raise ProtocolError(f"{what}: ^SECURITY discovery printed no ACCESS line")
    return SecurityDiscovery(access, error, found, tuple(unsafe))


def detect_layout(probe: Probe, discovery: SecurityDiscovery | None) -> StorageLayout:
    """The member's layout from its version and (on 2025.2+) its ^SECURITY subscripts."""
    if not uses_irissecurity(probe):
        return StorageLayout.CLASSIC
    if discovery is None or not discovery.subscripts:
        return StorageLayout.SECURITY_EMPTY
    nested = NESTED_ROOT in discovery.subscripts
    flat = any(name != NESTED_ROOT for name in discovery.subscripts)
    if nested and flat:
        return StorageLayout.SECURITY_MIXED
    return StorageLayout.SECURITY_NESTED if nested else StorageLayout.SECURITY_FLAT


def privilege_problem(member: str, discovery: SecurityDiscovery) -> str | None:
    """What is missing when ^SECURITY cannot be read, said so an admin can fix it."""
    if discovery.access:
        return None
    return (
        f"{member}: the IRIS user cannot read ^SECURITY in IRISSECURITY directly "
        f"({discovery.access_error or 'refused'}); IRIS 2025.2+ requires the %All role for "
        "the export/import of OAuth2 data (facts §6.2): grant %All to the user mirrorsync "
        "logs in as (or to the OS user, with OS authentication)"
    )


def flat_candidates(classes: Sequence[str], extra: Sequence[str] = ()) -> frozenset[str]:
    """Flat ``^SECURITY`` subscripts that belong to the configured item groups.

    Each class's former D, I and S globals, plus the bare class name (the migration table writes
    ``OAuth2.Client`` without ``D``, facts §6.2), plus configured extra names.
    """
    names = {f"{cls}{suffix}" for cls in classes for suffix in ("D", "I", "S")}
    names.update(classes)
    names.update(extra)
    return frozenset(names)


def selected_subscripts(
    layout: StorageLayout, discovery: SecurityDiscovery, wanted: frozenset[str]
) -> tuple[str, ...]:
    """The first-level ^SECURITY subscripts that make up the item set on a member.

    Flat: the discovered subscripts among ``wanted`` (``flat_candidates``). Nested: the one
    ``"OAuth2"`` subtree, as the official recipe exports it (the groups cannot narrow it).
    """
    if layout == StorageLayout.SECURITY_NESTED:
        return (NESTED_ROOT,)
    if layout == StorageLayout.SECURITY_FLAT:
        return tuple(sorted(name for name in discovery.subscripts if name in wanted))
    return ()


def pair_refusal(
    source_name: str,
    source: Probe,
    source_layout: StorageLayout,
    target_name: str,
    target: Probe,
    target_layout: StorageLayout,
    *,
    allow_newer_to_older: bool = False,
) -> str | None:
    """Why the primary's data must not be copied to this member, or None.

    Layouts that differ are always refused: an export of one layout loads into the other's
    place, which would be wrong data in the wrong global. (``security-empty`` accepts either
    2025.2+ layout: the member has no OAuth2 data yet.) A newer primary copying to an older
    member is refused unless ``iris.allow_newer_to_older`` is set (rolling upgrades).
    """
    if StorageLayout.SECURITY_MIXED in (source_layout, target_layout):
        return (
            f'{target_name}: ^SECURITY holds both a "OAuth2" subtree and "OAuth2.*" '
            "subscripts on "
            f"{source_name if source_layout == StorageLayout.SECURITY_MIXED else target_name}; "
            "mirrorsync does not know which one IRIS uses and touches neither"
        )
    compatible = source_layout == target_layout or (
        target_layout == StorageLayout.SECURITY_EMPTY
        and source_layout in (StorageLayout.SECURITY_FLAT, StorageLayout.SECURITY_NESTED)
    )
    if not compatible:
        return (
            f"{target_name}: IRIS {target.version} stores OAuth2 as {target_layout.value}, the "
            f"primary {source_name} (IRIS {source.version}) as {source_layout.value}; copying "
            "between different layouts is refused (finish the upgrade of every member first)"
        )
    if source.version_tuple > target.version_tuple and not allow_newer_to_older:
        return (
            f"{target_name}: IRIS {target.version} is older than the primary {source_name} "
            f"(IRIS {source.version}); copying from a newer to an older version is refused "
            "unless iris.allow_newer_to_older is set"
        )
    return None


@dataclass(frozen=True)
class ItemPlan:
    """The scripts that read, export and import one member's item set, whatever the layout.

    ``names`` are global names (classic) or first-level ^SECURITY subscripts; a read-out parsed
    with ``results.parse_readout(payload, plan.names, ...)`` is keyed by them either way.
    """

    layout: StorageLayout
    names: tuple[str, ...]

    @property
    def on_security(self) -> bool:
        """Whether the items are ^SECURITY subtrees."""
        return self.layout != StorageLayout.CLASSIC

    def readout(self) -> Callable[[str], str]:
        """Builder of the read-out script."""
        names = self.names
        if self.on_security:
            return lambda token: scripts.security_readout(token, names)
        return lambda token: scripts.readout(token, names)

    def export(self, present: Sequence[str], path: str) -> Callable[[str], str]:
        """Builder of the export script for the ``present`` items."""
        if self.on_security:
            return lambda token: scripts.security_export(token, present, path)
        return lambda token: scripts.export(token, present, path)

    def load(self, path: str, kill: Sequence[str]) -> Callable[[str], str]:
        """Builder of the import script; ``kill`` = every item the member holds (killed first,
        in the same transaction as the Load)."""
        if self.on_security:
            return lambda token: scripts.security_load(token, path, kill)
        return lambda token: scripts.load(token, path, kill)

    def kill(self, items: Sequence[str]) -> Callable[[str], str]:
        """Builder of a script removing whole items (restoring a member that held none)."""
        if self.on_security:
            return lambda token: scripts.security_kill(token, items)
        return lambda token: scripts.kill_globals(token, items)

    def with_names(self, names: Sequence[str]) -> ItemPlan:
        """The same layout over other item names."""
        return ItemPlan(self.layout, tuple(names))


def plan_for(
    layout: StorageLayout,
    classic_names: Sequence[str],
    discovery: SecurityDiscovery | None,
    wanted: frozenset[str],
) -> ItemPlan:
    """The item plan for a primary in ``layout``."""
    if layout == StorageLayout.CLASSIC:
        return ItemPlan(layout, tuple(classic_names))
    if discovery is None:
        return ItemPlan(layout, ())
    return ItemPlan(layout, selected_subscripts(layout, discovery, wanted))


def logical_key(key: NodeKey) -> NodeKey:
    """A nested-layout key as the former global it stands for, for readable reports.

    ``("OAuth2", ("Server.ClientD", id, ...))`` -> ``("OAuth2.Server.ClientD", (id, ...))``;
    every other key is returned unchanged.
    """
    name, subscripts = key
    if name == NESTED_ROOT and subscripts:
        return f"{NESTED_ROOT}.{subscripts[0]}", subscripts[1:]
    return key


def logical_readout(readout: Mapping[NodeKey, str]) -> dict[NodeKey, str]:
    """``logical_key`` applied to a whole read-out (a bijection: nothing merges)."""
    return {logical_key(key): value for key, value in readout.items()}

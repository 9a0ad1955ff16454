"""Typed results parsed from frame payloads (one parser per script in ``scripts``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from mirrorsync.errors import ProtocolError
from mirrorsync.iris.frames import decode_b64

Subscripts = tuple[str, ...]
NodeKey = tuple[str, Subscripts]
"""(global name without caret, subscripts as IRIS strings); the root node has no subscripts."""


class Role(StrEnum):
    """A member's current mirror role, derived per facts §5."""

    PRIMARY = "primary"
    BACKUP = "backup"
    ASYNC = "async"
    TRANSITION = "transition"
    NOT_MEMBER = "not_member"


@dataclass(frozen=True)
class Probe:
    """What a member says about itself."""

    version: str
    zv: str
    namespace: str
    is_member: int
    is_primary: bool
    is_backup: bool
    is_async_connected: bool
    member_type: str
    status: str
    mirror_name: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``2025.1.2`` -> (2025, 1, 2)."""
        return tuple(int(part) for part in self.version.split("."))

    @property
    def role(self) -> Role:
        """Primary iff IsPrimary; backup iff failover + IsBackup; a failover member with
        neither flag is in transition and must never be exported from or imported into."""
        if self.is_primary:
            return Role.PRIMARY
        if self.is_member == 1:
            return Role.BACKUP if self.is_backup else Role.TRANSITION
        if self.is_member == 2:
            return Role.ASYNC
        return Role.NOT_MEMBER


_VERSION = re.compile(r"^\d{4}\.\d+(?:\.\d+)*$")


def _fields(payload: Sequence[str], what: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in payload:
        key, _, value = line.partition(" ")
        if key in fields:
            raise ProtocolError(f"{what}: field {key} printed twice")
        fields[key] = value
    return fields


def parse_probe(payload: Sequence[str], what: str) -> Probe:
    """Parse the output of ``scripts.probe``."""
    fields = _fields(payload, what)
    missing = {"VERSION", "ZV", "NAMESPACE", "MIRROR"} - fields.keys()
    if missing:
        raise ProtocolError(f"{what}: probe output lacks {', '.join(sorted(missing))}")
    version = fields["VERSION"].strip()
    if not _VERSION.match(version):
        zv = decode_b64(fields["ZV"].strip())
        raise ProtocolError(
            f"{what}: cannot read an IRIS version number ({version!r}) from $ZV {zv!r}"
        )
    parts = fields["MIRROR"].split("|")
    if len(parts) != 7 or not all(p in ("0", "1", "2") for p in parts[:4]):
        raise ProtocolError(f"{what}: malformed mirror line {fields['MIRROR']!r}")
    return Probe(
        version=version,
        zv=decode_b64(fields["ZV"].strip()),
        namespace=fields["NAMESPACE"].strip(),
        is_member=int(parts[0]),
        is_primary=parts[1] == "1",
        is_backup=parts[2] == "1",
        is_async_connected=parts[3] == "1",
        member_type=parts[4],
        status=parts[5],
        mirror_name=parts[6],
    )


@dataclass(frozen=True)
class Discovery:
    """Which configured globals exist, and every OAuth2-looking global on the member."""

    data: dict[str, int]
    oauth_globals: tuple[str, ...]

    def existing(self) -> tuple[str, ...]:
        """Configured globals that hold at least one node."""
        return tuple(name for name, value in self.data.items() if value > 0)

    def suggestions(self, name: str) -> tuple[str, ...]:
        """Globals whose name equals ``name`` ignoring case (e.g. MetaData vs Metadata)."""
        return tuple(g for g in self.oauth_globals if g.lower() == name.lower() and g != name)


def parse_discovery(payload: Sequence[str], what: str) -> Discovery:
    """Parse the output of ``scripts.discover``."""
    data: dict[str, int] = {}
    found: list[str] = []
    for line in payload:
        parts = line.split(" ")
        if parts[0] == "D" and len(parts) == 3 and parts[2] in ("0", "1", "10", "11"):
            data[parts[1]] = int(parts[2])
        elif parts[0] == "G" and len(parts) == 2 and parts[1]:
            found.append(parts[1].removeprefix("^"))
        else:
            raise ProtocolError(f"{what}: unexpected line in discovery output: {line[:80]!r}")
    return Discovery(data=data, oauth_globals=tuple(found))


def parse_readout(payload: Sequence[str], names: Sequence[str], what: str) -> dict[NodeKey, str]:
    """Parse the output of ``scripts.readout`` into {(global, subscripts): value}."""
    allowed = set(names)
    nodes: dict[NodeKey, str] = {}
    for line in payload:
        parts = line.split(" ")
        if len(parts) < 4 or parts[0] != "N" or parts[1] not in allowed or not parts[2].isdigit():
            raise ProtocolError(f"{what}: unexpected line in read-out: {line[:80]!r}")
        depth = int(parts[2])
        if len(parts) != depth + 4:
            raise ProtocolError(
                f"{what}: read-out line has {len(parts) - 4} subscripts, "
                f"expected {depth}: {line[:80]!r}"
            )
        subscripts = tuple(decode_b64(part) for part in parts[3 : 3 + depth])
        key = (parts[1], subscripts)
        if key in nodes:
            raise ProtocolError(f"{what}: node printed twice in read-out")
        nodes[key] = decode_b64(parts[-1])
    return nodes

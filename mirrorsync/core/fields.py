"""Field maps of the OAuth2 classes' ``$LIST`` records, and a strict decoder for them.

A map is used only when a record's shape matches it (a valid ``$LIST``, at least as many slots
as the map names, and every named slot of the expected type). Anything else is shown node by
node: never guess what a slot means. Slots past the map (newer IRIS versions append properties,
facts §6.1) are named ``slot N``.

Sources (facts §6.1, CONFIRMED from the Caché storage definitions): ``OAuth2.Server.Client``
slots 1-19, ``OAuth2.Client`` and ``OAuth2.ServerDefinition``. ``OAuth2.Client.MetaData`` has no
published layout, so it has no map here (its records are compared slot by slot, values hidden).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from mirrorsync import listcodec
from mirrorsync.listcodec import ListItem

VersionTuple = tuple[int, ...]


class FieldKind(StrEnum):
    """How a slot is stored and shown."""

    TEXT = "text"
    """A string or number (``%String``, ``%Boolean``, ``%Integer``...)."""
    LIST = "list"
    """A ``list of %String`` property: a nested ``$LB`` of strings (e.g. ``RedirectURL``)."""
    SERIAL = "serial"
    """An embedded serial object: a nested ``$LB`` of its own properties."""


@dataclass(frozen=True)
class Field:
    """One slot of a record."""

    name: str
    kind: FieldKind = FieldKind.TEXT
    secret: bool = False


@dataclass(frozen=True)
class Layout:
    """The ``$LIST`` layout of one class's data global, for a range of IRIS versions."""

    class_name: str
    data_global: str
    fields: tuple[Field, ...]
    noun: str
    """What one record is called in reports, e.g. ``client``."""
    id_name: str
    """What the record key (first subscript) is, e.g. ``ClientId``."""
    label_field: str | None
    """The field holding the human name, if the class has one."""
    versions: tuple[VersionTuple, VersionTuple] = ((0,), (2025, 2))
    """[first, end) of the IRIS versions this layout was seen in (classic ``^OAuth2.*``)."""

    def field_at(self, slot: int) -> Field | None:
        """The field of 1-based ``slot``, or None past the map."""
        return self.fields[slot - 1] if 1 <= slot <= len(self.fields) else None

    def slot_of(self, name: str) -> int | None:
        """The 1-based slot of field ``name``."""
        for number, field in enumerate(self.fields, start=1):
            if field.name == name:
                return number
        return None

    def applies_to(self, version: VersionTuple | None) -> bool:
        """Whether this layout is known for IRIS ``version`` (unknown version: the classic range,
        since mirrorsync only reads the classic globals)."""
        if version is None:
            return True
        first, end = self.versions
        return first <= version < end


_T = FieldKind.TEXT
_L = FieldKind.LIST
_S = FieldKind.SERIAL

# facts §6.1, ClientDefaultData (1-based); ClientId is the subscript, not a slot.
SERVER_CLIENT = Layout(
    class_name="OAuth2.Server.Client",
    data_global="OAuth2.Server.ClientD",
    fields=(
        Field("%%CLASSNAME"),
        Field("ClientSecret", secret=True),
        Field("RedirectURL", _L),
        Field("DefaultScope"),
        Field("SupportedGrantTypes"),
        Field("Description"),
        Field("ClientType"),
        Field("Name"),
        Field("LaunchURL"),
        Field("ClientCredentials"),
        Field("logo_uri"),
        Field("client_uri"),
        Field("policy_uri"),
        Field("tos_uri"),
        Field("LogoUri"),
        Field("ClientUri"),
        Field("PolicyUri"),
        Field("TosUri"),
        Field("client_name"),
    ),
    noun="client",
    id_name="ClientId",
    label_field="Name",
)

# facts §6.1: OAuth2.Client is keyed by ApplicationName (the subscript).
CLIENT_APPLICATION = Layout(
    class_name="OAuth2.Client",
    data_global="OAuth2.ClientD",
    fields=(
        Field("%%CLASSNAME"),
        Field("Enabled"),
        Field("Description"),
        Field("ClientType"),
        Field("SSLConfiguration"),
        Field("RedirectionEndpoint", _S),
        Field("DefaultScope"),
        Field("AuthenticationType"),
        Field("ClientId"),
        Field("ClientSecret", secret=True),
        Field("ClientCredentials"),
        Field("ClientPassword", secret=True),
        Field("ServerDefinition"),
        Field("SigningAlgorithm"),
        Field("EncryptionAlgorithm"),
        Field("KeyAlgorithm"),
    ),
    noun="client application",
    id_name="ApplicationName",
    label_field=None,
)

# facts §6.1: system ID; the root node of the data global is the ID counter.
SERVER_DEFINITION = Layout(
    class_name="OAuth2.ServerDefinition",
    data_global="OAuth2.ServerDefinitionD",
    fields=(
        Field("%%CLASSNAME"),
        Field("IssuerEndpoint"),
        Field("AuthorizationEndpoint"),
        Field("TokenEndpoint"),
        Field("UserinfoEndpoint"),
        Field("ServerCredentials"),
        Field("Hash"),
        Field("IntrospectionEndpoint"),
        Field("RevocationEndpoint"),
    ),
    noun="server definition",
    id_name="ID",
    label_field="IssuerEndpoint",
)

LAYOUTS: tuple[Layout, ...] = (SERVER_CLIENT, CLIENT_APPLICATION, SERVER_DEFINITION)

SECRET_FIELD_NAMES = frozenset(
    {"ClientSecret", "ClientPassword", "client_secret", "PrivateKey", "PrivateJWKS", "JWKSPrivate"}
)
"""Field names that are secret in every class (more come from the configuration)."""


@dataclass(frozen=True)
class IndexSpec:
    """A unique index ``^G(index_name, value, id)=""`` over one field of a data global."""

    index_global: str
    index_name: str
    layout: Layout
    field: str
    """The indexed field; the entry's value is ``" "_$ZCVT(field,"U")`` (SQLUPPER)."""


# facts §6.1 INFERRED index shape (the simulator seeds exactly this).
INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec("OAuth2.Server.ClientI", "NameIndex", SERVER_CLIENT, "Name"),
)


def layout_for(global_name: str, version: VersionTuple | None) -> Layout | None:
    """The field map of ``global_name`` for IRIS ``version``, if one is known."""
    for layout in LAYOUTS:
        if layout.data_global == global_name and layout.applies_to(version):
            return layout
    return None


def _scalar(item: ListItem) -> bool:
    return item is None or isinstance(item, str | int | Decimal | float)


def _nested(item: ListItem) -> bool:
    """A nested list item: an empty string (an empty list) or a string holding a valid $LIST."""
    return isinstance(item, str) and listcodec.decode_or_none(item) is not None


def decode_record(layout: Layout, value: str) -> list[ListItem] | None:
    """The record's slots if ``value`` has the layout's shape, else None (never a guess)."""
    slots = listcodec.decode_or_none(value)
    if slots is None or len(slots) < len(layout.fields):
        return None
    if not isinstance(slots[0], str):  # %%CLASSNAME is always a string
        return None
    for field, item in zip(layout.fields, slots, strict=False):
        if field.kind is FieldKind.TEXT and not _scalar(item):
            return None
        if field.kind in (FieldKind.LIST, FieldKind.SERIAL) and not (item is None or _nested(item)):
            return None
    return slots


def nested_items(item: ListItem) -> list[ListItem]:
    """The elements of a nested list slot (``None`` = no list)."""
    if item is None or item == "":
        return []
    decoded = listcodec.decode_or_none(str(item))
    return decoded if decoded is not None else []


def label_of(layout: Layout, slots: Sequence[ListItem] | None) -> str | None:
    """The human name in a decoded record (e.g. the client's Name), if any."""
    if slots is None or layout.label_field is None:
        return None
    slot = layout.slot_of(layout.label_field)
    if slot is None or slot > len(slots):
        return None
    value = slots[slot - 1]
    return value if isinstance(value, str) and value else None

"""Realistic OAuth2 server client records for simulated hosts (facts §6.1).

``^OAuth2.Server.ClientD(ClientId)`` holds a ``$LIST`` of slots 1..19 in the Caché storage order
(some clients carry extra trailing slots, as newer IRIS versions append properties);
``^OAuth2.Server.ClientI("NameIndex", " "_$ZCVT(Name,"U"), ClientId)=""`` is the unique name index;
``^OAuth2.Client.MetaDataD(ClientId)`` holds registration metadata.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from mirrorsync import listcodec
from mirrorsync.sim.host import SimHost

CLIENT_DATA = "OAuth2.Server.ClientD"
CLIENT_INDEX = "OAuth2.Server.ClientI"
METADATA_DATA = "OAuth2.Client.MetaDataD"
SEED_GLOBALS = (CLIENT_DATA, CLIENT_INDEX, METADATA_DATA)

_ALPHANUM = string.ascii_letters + string.digits
_SECRET_CHARS = _ALPHANUM + "-_"

_NAME_STEMS = (
    "Billing Portal",
    "Patient App",
    "Lab Results API",
    "Scheduler",
    "Mobile Gateway",
    "Reporting Service",
    "Zürich Klinik Portal",
    "東京 Gateway",
    "Ωmega Analytics",
    "Café Kiosk",
    "São Paulo Intake",
    "Partner SSO",
)
_HOSTS = ("app.example.com", "portal.example.org", "api.example.net", "localhost:8443")
_SCOPES = ("openid", "openid profile", "openid profile email", "openid patient/*.read", "scim")
_CLIENT_TYPES = ("confidential", "public", "resource")
# ASSUMPTION (facts §6.1 names the slot, not its codes): grant types as letter codes.
_GRANT_TYPES = ("A", "AC", "ACR", "C", "AIR")
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")


CLASSIC = "classic"
"""IRIS <= 2025.1: ``^OAuth2.Server.ClientD(id)`` etc. in IRISSYS (facts §6.1)."""
SECURITY_FLAT = "security-flat"
"""IRIS >= 2025.2, table form: ``^SECURITY("OAuth2.Server.ClientD",id)`` (facts §6.2)."""
SECURITY_NESTED = "security-nested"
"""IRIS >= 2025.2, recipe form: ``^SECURITY("OAuth2","Server.ClientD",id)`` (facts §6.2/6.3).

ASSUMPTION (facts §6.2, UNKNOWN/CONFLICT): the real 2025.2 storage is not public; the simulator
offers both candidate layouts. The nested one puts the global name without its ``OAuth2.`` prefix
under ``^SECURITY("OAuth2")`` so the official export recipe captures it.
"""
LAYOUTS = (CLASSIC, SECURITY_FLAT, SECURITY_NESTED)


def default_layout(version_number: str) -> str:
    """``classic`` before 2025.2, ``security-flat`` from 2025.2 on (facts §6.2 rule)."""
    pieces = [int(p) if p.isdigit() else 0 for p in version_number.split(".")[:2]]
    major, minor = [*pieces, 0, 0][:2]
    return CLASSIC if (major, minor) < (2025, 2) else SECURITY_FLAT


def place(layout: str, global_name: str, subs: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """Where a classic node ``^global_name(subs)`` lives in ``layout``."""
    if layout == CLASSIC:
        return global_name, subs
    if layout == SECURITY_FLAT:
        return "SECURITY", (global_name, *subs)
    if layout == SECURITY_NESTED:
        return "SECURITY", ("OAuth2", global_name.removeprefix("OAuth2."), *subs)
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def write_security_baseline(host: SimHost) -> None:
    """Non-OAuth2 ``^SECURITY`` nodes (users, version), so a too-wide kill is noticed."""
    with host.transaction() as store:
        tree = store.tree("SECURITY", create=True)
        assert tree is not None
        tree.set(("UsersD", "admin"), listcodec.encode(["", "admin", "%All"]))
        tree.set(("UsersD", "_system"), listcodec.encode(["", "_system", "%All"]))
        tree.set(("Version",), "10")


@dataclass(frozen=True)
class Client:
    """One ``OAuth2.Server.Client`` (only the slots the simulator fills)."""

    client_id: str
    secret: str
    name: str
    description: str
    redirect_urls: tuple[str, ...]
    scope: str
    grant_types: str
    client_type: str
    launch_url: str
    auth_method: str
    contacts: tuple[str, ...]
    extra_slots: tuple[listcodec.ListItem, ...] = field(default=())

    def data_value(self) -> str:
        """The ``^OAuth2.Server.ClientD(ClientId)`` value: slots 1..19 (+ extras)."""
        slots: list[listcodec.ListItem] = [
            "",  # 1 %%CLASSNAME: empty for the base class
            self.secret,  # 2 ClientSecret
            listcodec.encode(list(self.redirect_urls)),  # 3 RedirectURL, a nested $LB
            self.scope,  # 4 DefaultScope
            self.grant_types,  # 5 SupportedGrantTypes
            self.description,  # 6 Description
            self.client_type,  # 7 ClientType
            self.name,  # 8 Name
            self.launch_url,  # 9 LaunchURL
            "",  # 10 ClientCredentials
            "",  # 11 logo_uri
            f"https://{_host_of(self.redirect_urls)}/",  # 12 client_uri
            "",  # 13 policy_uri
            "",  # 14 tos_uri
            "",  # 15 LogoUri
            "",  # 16 ClientUri
            "",  # 17 PolicyUri
            "",  # 18 TosUri
            self.name,  # 19 client_name
        ]
        return listcodec.encode([*slots, *self.extra_slots])

    def index_subscripts(self) -> tuple[str, str, str]:
        """``("NameIndex", " "_SQLUPPER(Name), ClientId)``: SQLUPPER adds a leading space."""
        return ("NameIndex", " " + self.name.upper(), self.client_id)

    def metadata_value(self) -> str:
        """``^OAuth2.Client.MetaDataD(ClientId)``.

        ASSUMPTION (facts §6.1 names the global only): a ``$LIST`` of %%CLASSNAME, client_name,
        grant_types (nested $LB), token_endpoint_auth_method, contacts (nested $LB),
        redirect_uris (nested $LB).
        """
        grants = {"A": "authorization_code", "C": "client_credentials", "I": "implicit"}
        grant_list = [grants[g] for g in self.grant_types if g in grants]
        if "R" in self.grant_types:
            grant_list.append("refresh_token")
        return listcodec.encode(
            [
                "",
                self.name,
                listcodec.encode(list(grant_list)),
                self.auth_method,
                listcodec.encode(list(self.contacts)),
                listcodec.encode(list(self.redirect_urls)),
            ]
        )


def _host_of(urls: Sequence[str]) -> str:
    return urls[0].split("/")[2] if urls else "example.com"


def _token(rng: random.Random, length: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def make_client(rng: random.Random, name: str) -> Client:
    """One random client named ``name``."""
    host = rng.choice(_HOSTS)
    redirect_count = rng.randint(1, 3)
    redirects = tuple(f"https://{host}/oauth2/callback{n or ''}" for n in range(redirect_count))
    description = rng.choice(
        (
            f"{name} (production)",
            'Legacy client: "R&D" <do not delete>',
            "",
            f"Integration for {name}; owner: team-{rng.randint(1, 9)}",
        )
    )
    extra: tuple[listcodec.ListItem, ...] = ()
    if rng.random() < 0.25:
        # Newer IRIS versions append slots (facts §6.1): a number, an empty string and a JWKS URI.
        extra = (rng.randint(0, 1), "", f"https://{host}/jwks")
    return Client(
        client_id=_token(rng, 32, _ALPHANUM),
        secret=_token(rng, 43, _SECRET_CHARS),
        name=name,
        description=description,
        redirect_urls=redirects,
        scope=rng.choice(_SCOPES),
        grant_types=rng.choice(_GRANT_TYPES),
        client_type=rng.choice(_CLIENT_TYPES),
        launch_url=f"https://{host}/launch" if rng.random() < 0.5 else "",
        auth_method=rng.choice(_AUTH_METHODS),
        contacts=tuple(f"ops{n}@example.com" for n in range(rng.randint(0, 2))),
        extra_slots=extra,
    )


def make_clients(count: int, rng: random.Random) -> list[Client]:
    """``count`` clients with unique names (NameIndex is unique) and unique ids."""
    clients: list[Client] = []
    used: set[str] = set()
    for number in range(count):
        stem = _NAME_STEMS[number % len(_NAME_STEMS)]
        name = stem if number < len(_NAME_STEMS) else f"{stem} {number // len(_NAME_STEMS) + 1}"
        while name.upper() in used:
            name += "+"
        used.add(name.upper())
        clients.append(make_client(rng, name))
    return clients


def client_nodes(client: Client) -> list[tuple[str, tuple[str, ...], str]]:
    """The classic (global, subscripts, value) nodes of one client."""
    return [
        (CLIENT_DATA, (client.client_id,), client.data_value()),
        (CLIENT_INDEX, client.index_subscripts(), ""),
        (METADATA_DATA, (client.client_id,), client.metadata_value()),
    ]


def write_clients(host: SimHost, clients: Iterable[Client], layout: str = CLASSIC) -> None:
    """Store data, index and metadata nodes of every client in one locked write."""
    with host.transaction() as store:
        for client in clients:
            for name, subs, value in client_nodes(client):
                target, target_subs = place(layout, name, subs)
                tree = store.tree(target, create=True)
                assert tree is not None
                tree.set(target_subs, value)


def remove_client(host: SimHost, client: Client, layout: str = CLASSIC) -> None:
    """Delete a client's data, index and metadata nodes."""
    with host.transaction() as store:
        for name, subs, _ in client_nodes(client):
            target, target_subs = place(layout, name, subs)
            tree = store.tree(target)
            if tree is not None:
                tree.kill(target_subs)


@dataclass(frozen=True)
class DriftSummary:
    """Exactly which ClientIds a drifted member lacks, holds with another secret, or has extra."""

    missing: tuple[str, ...]
    changed_secret: tuple[str, ...]
    extra: tuple[str, ...]
    extra_clients: tuple[Client, ...] = ()


def drift_member(
    host: SimHost,
    clients: Sequence[Client],
    rng: random.Random,
    *,
    missing: int = 3,
    changed_secret: int = 1,
    extra: int = 1,
    layout: str = CLASSIC,
) -> DriftSummary:
    """Make ``host`` (which holds ``clients``) drift: remove, re-key and add clients."""
    if missing + changed_secret > len(clients):
        raise ValueError("not enough clients to drift")
    chosen = rng.sample(list(clients), missing + changed_secret)
    removed, rekeyed = chosen[:missing], chosen[missing:]
    for client in removed:
        remove_client(host, client, layout)
    rekeyed_clients = [replace(c, secret=_token(rng, 43, _SECRET_CHARS)) for c in rekeyed]
    write_clients(host, rekeyed_clients, layout)
    used = {c.name.upper() for c in clients}
    added: list[Client] = []
    for number in range(extra):
        name = f"Rogue Client {number + 1}"
        while name.upper() in used:
            name += "+"
        used.add(name.upper())
        added.append(make_client(rng, name))
    write_clients(host, added, layout)
    return DriftSummary(
        missing=tuple(sorted(c.client_id for c in removed)),
        changed_secret=tuple(sorted(c.client_id for c in rekeyed)),
        extra=tuple(sorted(c.client_id for c in added)),
        extra_clients=tuple(added),
    )

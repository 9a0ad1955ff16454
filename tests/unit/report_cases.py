"""Hand-built, realistic OAuth2 read-outs for the report tests (fixed ids, fixed secrets)."""

from __future__ import annotations

from dataclasses import replace

from mirrorsync.core.diff import compare
from mirrorsync.core.explain import explain
from mirrorsync.core.report import MemberReport, MemberStatus, MirrorReport
from mirrorsync.core.secrets import FingerprintKey
from mirrorsync.iris.results import NodeKey
from mirrorsync.sim.seed import Client, client_nodes

INDEX_GLOBALS = frozenset({"OAuth2.Server.ClientI", "OAuth2.Client.MetaDataI"})
KEY = FingerprintKey(b"\x01" * 32)


def client(client_id: str, name: str, secret: str, **changes: object) -> Client:
    """A client with plausible defaults."""
    base = Client(
        client_id=client_id,
        secret=secret,
        name=name,
        description=f"{name} (production)",
        redirect_urls=("https://billing.example.org/cb",),
        scope="openid profile",
        grant_types="AC",
        client_type="confidential",
        launch_url="",
        auth_method="client_secret_basic",
        contacts=("ops@example.org",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


BILLING = client("8f2c0d9a41b7e6c3", "Billing Portal", "S3cr3t-billing-OLD-value-0001")
PATIENT = client(
    "a11ce5e5b0b0c0de",
    "Zürich Klinik Portal 東京",
    "S3cr3t-patient-value-0002",
    description='Legacy client: "R&D" <do not delete>',
)
OLD_APP = client("0ldapp0ldapp0ld1", "Old app", "S3cr3t-oldapp-value-0003")
NEWER = client(
    "nevv3rn3w3r00001",
    "Newer IRIS client",
    "S3cr3t-newer-value-0004",
    extra_slots=(1, "", "https://newer.example.org/jwks"),
)
ROGUE = client("r0gue000r0gue001", "Rogue Client", "S3cr3t-rogue-value-0005")

ROTATED = "S3cr3t-billing-NEW-value-0006"
FIXTURE_SECRETS = (
    BILLING.secret,
    PATIENT.secret,
    OLD_APP.secret,
    NEWER.secret,
    ROGUE.secret,
    ROTATED,
)


def nodes(*clients: Client) -> dict[NodeKey, str]:
    """The read-out of a member holding ``clients``."""
    return {(g, s): v for c in clients for g, s, v in client_nodes(c)}


def scenario() -> tuple[dict[NodeKey, str], dict[NodeKey, str], dict[NodeKey, str]]:
    """(baseline, primary, backup) of the golden report.

    Since the last sync (baseline): the primary rotated Billing's secret and added a redirect
    URI, deleted 'Old app', edited the unicode-named client's description (``&<>"``), and a
    newer-version record changed a trailing slot; on the backup
    someone registered 'Rogue Client' directly and left an orphan NameIndex entry.
    """
    baseline = nodes(BILLING, PATIENT, OLD_APP, NEWER)
    primary = nodes(
        replace(
            BILLING,
            secret=ROTATED,
            redirect_urls=(*BILLING.redirect_urls, "https://billing.example.org/cb2"),
        ),
        replace(PATIENT, description='Intake "v2" & <triage> | ward 7'),
        replace(NEWER, extra_slots=(0, "", "https://newer.example.org/jwks2")),
    )
    backup = {
        **baseline,
        **nodes(ROGUE),
        ("OAuth2.Server.ClientI", ("NameIndex", " GHOST", "ghost0000ghost01")): "",
    }
    return baseline, primary, backup


def golden_report() -> MirrorReport:
    """The report of the golden scenario, as the engine would build it."""
    baseline, primary, backup = scenario()
    explanation = explain(
        primary, backup, key=KEY, index_globals=INDEX_GLOBALS, baseline=baseline, version=(2025, 1)
    )
    primary_report = MemberReport("iris-a", "primary", "2025.1", MemberStatus.IN_SYNC)
    primary_report.explanation = explain(
        primary, primary, key=KEY, index_globals=INDEX_GLOBALS, version=(2025, 1)
    )
    backup_report = MemberReport(
        "iris-b",
        "backup",
        "2025.1",
        MemberStatus.DRIFT,
        compare(primary, backup, INDEX_GLOBALS),
        explanation=explanation,
    )
    return MirrorReport("LABMIRROR", "drift", [primary_report, backup_report], primary="iris-a")

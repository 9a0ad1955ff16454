"""Field-level drift reports: golden text/Markdown/JSON, the JSON Schema, and no secret leaks."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from mirrorsync import listcodec
from mirrorsync.core.diff import Kind
from mirrorsync.core.explain import FindingKind, Hidden, MemberExplanation, Origin, explain
from mirrorsync.core.render import escape, md, render_markdown, render_text
from mirrorsync.core.report import MemberReport, MemberStatus, MirrorReport, render_json
from mirrorsync.core.secrets import SecretPolicy
from tests.unit.report_cases import (
    BILLING,
    FIXTURE_SECRETS,
    INDEX_GLOBALS,
    KEY,
    NEWER,
    PATIENT,
    ROTATED,
    golden_report,
    nodes,
    scenario,
)

GOLDEN = Path(__file__).parent / "golden"
SCHEMA = Path(__file__).parents[2] / "docs" / "report.schema.json"
CLIENT_D = "OAuth2.Server.ClientD"


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/unit/golden/NAME; MIRRORSYNC_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if os.environ.get("MIRRORSYNC_UPDATE_GOLDEN") == "1":
        path.write_text(actual + "\n", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == actual + "\n"


def backup_explanation() -> MemberExplanation:
    """The backup's explanation in the golden scenario."""
    baseline, primary, backup = scenario()
    return explain(
        primary, backup, key=KEY, index_globals=INDEX_GLOBALS, baseline=baseline, version=(2025, 1)
    )


def test_golden_text_report() -> None:
    """The text report of the realistic scenario matches the reviewed golden file."""
    check_golden("report.txt", render_text([golden_report()]))


def test_golden_markdown_report() -> None:
    """The Markdown report matches the reviewed golden file."""
    check_golden("report.md", render_markdown([golden_report()]))


def test_golden_json_report_follows_the_schema() -> None:
    """The JSON report matches the golden file and validates against docs/report.schema.json."""
    document = render_json([golden_report()])
    check_golden("report.json", document)
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(json.loads(document))


def test_schema_accepts_reports_without_details_and_multi_mirror_documents() -> None:
    """Reports of members never compared (no explanation) and multi-mirror documents validate."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    bare = MirrorReport("M", "drift", [MemberReport("x", status=MemberStatus.UNREACHABLE)])
    document = json.loads(render_json([bare, golden_report()]))
    validator.validate(document)
    assert ("PARTIAL", 2) == (document["outcome"], len(document["mirrors"]))


def test_schema_rejects_a_secret_shown_in_clear() -> None:
    """The schema itself forbids a secret field carrying a plain value."""
    document = json.loads(render_json([golden_report()]))
    member = document["members"][1]
    changed = next(d for d in member["differences"] if d["fields"] and d["fields"][0]["secret"])
    changed["fields"][0]["member"] = "S3cr3t"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert not validator.is_valid(document)


def test_existing_json_keys_are_kept() -> None:
    """The documented keys of a difference are unchanged; details are added beside them."""
    difference = json.loads(render_json([golden_report()]))["members"][1]["differences"][0]
    assert {"global", "key", "key_text", "kind", "nodes"} <= set(difference)


def test_secret_rotated_on_the_primary() -> None:
    """A rotated secret shows as present on both sides with different fingerprints, pending."""
    record = backup_explanation().record(CLIENT_D, (BILLING.client_id,))
    assert record is not None
    secret = next(f for f in record.fields if f.field == "ClientSecret")
    assert (True, 2, Origin.PENDING) == (secret.secret, secret.slot, record.origin)
    assert Hidden(True, KEY.fingerprint(BILLING.secret)) == secret.member
    assert Hidden(True, KEY.fingerprint(ROTATED)) == secret.primary
    assert "client 'Billing Portal' (ClientId 8f2c0d9a41b7e6c3)" == record.label


def test_redirect_uri_added() -> None:
    """A redirect URI added on the primary is named as the one the member lacks."""
    record = backup_explanation().record(CLIENT_D, (BILLING.client_id,))
    assert record is not None
    redirect = next(f for f in record.fields if f.field == "RedirectURL")
    assert (("https://billing.example.org/cb2",), ()) == (
        redirect.missing_on_member,
        redirect.extra_on_member,
    )


def test_client_deleted_on_the_primary_is_a_pending_removal() -> None:
    """A client the primary deleted since the last sync is 'removed', a normal pending change."""
    record = backup_explanation().record(CLIENT_D, ("0ldapp0ldapp0ld1",))
    assert record is not None
    assert (Kind.REMOVED, Origin.PENDING, "client 'Old app' (ClientId 0ldapp0ldapp0ld1)") == (
        record.kind,
        record.origin,
        record.label,
    )


def test_client_registered_directly_on_a_backup_is_member_modified() -> None:
    """A client that appeared on the backup outside mirrorsync is reported member-modified."""
    explanation = backup_explanation()
    record = explanation.record(CLIENT_D, ("r0gue000r0gue001",))
    assert record is not None
    assert (Kind.REMOVED, Origin.MEMBER_MODIFIED) == (record.kind, record.origin)
    assert 4 == explanation.member_modified


def test_orphaned_index_node_is_a_finding() -> None:
    """An index entry whose record does not exist is reported as an orphan."""
    (finding,) = backup_explanation().findings
    assert (FindingKind.ORPHAN_INDEX_ENTRY, ("NameIndex", " GHOST", "ghost0000ghost01")) == (
        finding.kind,
        finding.key,
    )


def test_record_without_its_index_entry_and_mismatched_entry() -> None:
    """A record missing its NameIndex entry and an entry naming another Name are both found."""
    readout = nodes(BILLING, PATIENT)
    del readout[("OAuth2.Server.ClientI", ("NameIndex", " BILLING PORTAL", BILLING.client_id))]
    readout[("OAuth2.Server.ClientI", ("NameIndex", " SOMETHING ELSE", PATIENT.client_id))] = ""
    findings = explain(readout, readout, key=KEY, index_globals=INDEX_GLOBALS).findings
    assert [
        (FindingKind.INDEX_VALUE_MISMATCH, PATIENT.client_id),
        (FindingKind.MISSING_INDEX_ENTRY, BILLING.client_id),
    ] == [(f.kind, f.key[-1]) for f in findings]


def test_unicode_names_and_markup_in_descriptions() -> None:
    """Unicode names label the record as they are; &<>" survive in JSON and are escaped in
    Markdown."""
    record = backup_explanation().record(CLIENT_D, (PATIENT.client_id,))
    assert record is not None
    description = next(f for f in record.fields if f.field == "Description")
    assert ('Legacy client: "R&D" <do not delete>', 'Intake "v2" & <triage> | ward 7') == (
        description.member,
        description.primary,
    )
    assert "client 'Zürich Klinik Portal 東京' (ClientId a11ce5e5b0b0c0de)" == record.label
    markdown = render_markdown([golden_report()])
    assert "<do not delete>" not in markdown
    assert "&lt;do not delete&gt;" in markdown
    assert "\\| ward 7" in markdown


def test_extra_trailing_slots_from_a_newer_version() -> None:
    """Slots past the field map show as 'slot N': numbers in clear, text only fingerprinted."""
    record = backup_explanation().record(CLIENT_D, (NEWER.client_id,))
    assert record is not None
    assert [("slot 20", 1, 0), ("slot 22", True, True)] == [
        (
            f.field,
            f.member.present if isinstance(f.member, Hidden) else f.member,
            f.primary.present if isinstance(f.primary, Hidden) else f.primary,
        )
        for f in record.fields
    ]
    assert "OAuth2.Server.Client" == record.layout


def test_record_of_another_shape_falls_back_to_nodes() -> None:
    """A ClientD value that is not the 19-slot layout is shown node by node, with a note."""
    primary = nodes(BILLING)
    member = dict(primary)
    member[(CLIENT_D, (BILLING.client_id,))] = listcodec.encode(["", "x", "short"])
    record = explain(primary, member, key=KEY).record(CLIENT_D, (BILLING.client_id,))
    assert record is not None
    assert (None, (), 1) == (record.layout, record.fields, len(record.nodes))
    assert record.note is not None
    assert "member's record" in record.note


def test_unknown_global_is_node_level_and_hidden() -> None:
    """A global without a field map shows changed nodes with fingerprints, never values."""
    primary = {("My.SettingsD", ("a", "b")): "value-one"}
    member = {("My.SettingsD", ("a", "b")): "value-two"}
    record = explain(primary, member, key=KEY).record("My.SettingsD", ("a",))
    assert record is not None
    (node,) = record.nodes
    assert (Hidden(True, KEY.fingerprint("value-two")), 'record ^My.SettingsD("a")') == (
        node.member,
        record.label,
    )


def test_configured_secret_field_and_private_keys_are_hidden() -> None:
    """A field configured as secret, a PEM private key and JWK private members never show."""
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----"
    jwks = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "pub", "d": "PRIVATE-D"}]})
    primary = nodes(BILLING)
    member = nodes(replace(BILLING, launch_url=pem, description=jwks, scope="openid email"))
    explanation = explain(
        primary, member, key=KEY, policy=SecretPolicy.of(["OAuth2.Server.ClientD:DefaultScope"])
    )
    record = explanation.record(CLIENT_D, (BILLING.client_id,))
    assert record is not None
    text = json.dumps([f.as_json() for f in record.fields])
    assert (False, False, False) == (
        "PRIVATE KEY" in text,
        "PRIVATE-D" in text,
        "openid email" in text,
    )
    description = next(f for f in record.fields if f.field == "Description")
    assert isinstance(description.member, str)
    assert "pub" == json.loads(description.member)["keys"][0]["x"]


def test_decimal_and_undefined_values_are_shown_plainly() -> None:
    """Numbers (incl. decimals) and undefined elements in mapped slots show as JSON values."""
    slots = listcodec.decode(BILLING.data_value())
    changed = list(slots)
    changed[8] = Decimal("2.5")
    changed[9] = None
    primary = {(CLIENT_D, ("x",)): listcodec.encode(slots)}
    member = {(CLIENT_D, ("x",)): listcodec.encode(changed)}
    record = explain(primary, member, key=KEY).record(CLIENT_D, ("x",))
    assert record is not None
    assert [("LaunchURL", 2.5, ""), ("ClientCredentials", None, "")] == [
        (f.field, f.member, f.primary) for f in record.fields
    ]


def test_no_fixture_secret_in_any_rendering() -> None:
    """None of the fixtures' secret values appears in the text, Markdown or JSON report."""
    report = golden_report()
    outputs = [render_text([report]), render_text([report], color=True), render_markdown([report])]
    outputs.append(render_json([report]))
    leaks = [s for s in FIXTURE_SECRETS for o in outputs if s in o]
    assert [] == leaks


def test_colour_only_when_asked() -> None:
    """ANSI colours appear only with color=True (the CLI passes it for a TTY)."""
    report = golden_report()
    assert ("\033[" in render_text([report]), "\033[" in render_text([report], color=True)) == (
        False,
        True,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a\x1b[31mb", "a\\x1b[31mb"), ("x\u202ey", "x\\u202ey"), ("back\\slash", "back\\\\slash")],
)
def test_escape_neutralises_terminal_controls(raw: str, expected: str) -> None:
    """Escape codes and bidi overrides in IRIS values cannot drive the terminal."""
    assert expected == escape(raw)


def test_markdown_escaping() -> None:
    """Markdown table cells cannot be broken by | or turned into HTML by < >."""
    assert "a \\| b &lt;i&gt; &amp;" == md("a | b <i> &")

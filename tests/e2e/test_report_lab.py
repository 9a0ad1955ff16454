"""End to end: field-level drift reports from the real CLI against the lab."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mirrorsync import listcodec
from mirrorsync.lab.lab import LabInfo
from tests.e2e.test_sync_lab import CLIENT_D, member_home, run_cli

pytestmark = pytest.mark.lab
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "report.schema.json").read_text())


def lab_secrets(lab: LabInfo) -> set[str]:
    """Every ClientSecret (slot 2) held by any lab member, read straight from the simulator."""
    found = set()
    for member in lab.members:
        host = member_home(lab, member.name)
        for subs, value in host.nodes(CLIENT_D):
            if len(subs) == 1:
                found.add(str(listcodec.decode(value)[1]))
    return found


def test_field_level_report_in_every_format_without_secrets(lab: LabInfo) -> None:
    """Drift names the changed secret by field, validates against the schema in JSON, and no
    output or log of any format or exit mode contains a secret value."""
    secrets = lab_secrets(lab)
    assert len(secrets) >= 12
    config = str(lab.config)
    runs = {
        fmt: run_cli("--log-level", "debug", "drift", "-c", config, "--format", fmt)
        for fmt in ("text", "markdown", "json")
    }
    runs["lenient"] = run_cli("drift", "-c", config, "--no-fail-on-drift")
    runs["dry-run"] = run_cli("sync", "-c", config, "--dry-run", "--format", "json")
    assert {"text": 2, "markdown": 2, "json": 2, "lenient": 0, "dry-run": 2} == {
        name: run.returncode for name, run in runs.items()
    }, runs["text"].stderr
    assert "DRIFT" == runs["lenient"].stdout.strip().splitlines()[-1]

    document = json.loads(runs["json"].stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    backup = next(m for m in document["members"] if m["name"] == "iris-b")
    (rekeyed,) = lab.drift["iris-b"].changed_secret
    record = next(
        d for d in backup["differences"] if d["global"] == CLIENT_D and d["key"] == [rekeyed]
    )
    assert [("ClientSecret", True)] == [(f["field"], f["secret"]) for f in record["fields"]]
    assert record["label"].startswith("client '")
    assert rekeyed in record["label"]
    assert "ClientSecret (secret): differs" in runs["text"].stdout
    assert "| change | record | what | details |" in runs["markdown"].stdout

    leaks = [
        (name, secret)
        for name, run in runs.items()
        for secret in secrets
        if secret in run.stdout or secret in run.stderr
    ]
    assert [] == leaks


def test_member_edit_after_a_sync_is_member_modified(lab: LabInfo) -> None:
    """After a sync, an edit made on the backup is 'member-modified' and one made on the
    primary is 'pending'."""
    assert 0 == run_cli("sync", "-c", str(lab.config)).returncode
    primary, backup = member_home(lab, "iris-a"), member_home(lab, "iris-b")
    ids = sorted(str(subs[0]) for subs, _ in primary.nodes(CLIENT_D) if len(subs) == 1)
    for host, client_id, text in ((backup, ids[0], "edited on b"), (primary, ids[1], "new on a")):
        slots = listcodec.decode(str(host.get(CLIENT_D, (client_id,))))
        slots[5] = text  # Description
        host.set(CLIENT_D, (client_id,), listcodec.encode(slots))

    result = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 2 == result.returncode, result.stderr
    member = next(m for m in json.loads(result.stdout)["members"] if m["name"] == "iris-b")
    origins = {d["key"][0]: d["origin"] for d in member["differences"]}
    assert {ids[0]: "member-modified", ids[1]: "pending"} == origins
    edited = next(d for d in member["differences"] if d["key"] == [ids[0]])
    assert [("Description", "edited on b")] == [(f["field"], f["member"]) for f in edited["fields"]]
    text = run_cli("drift", "-c", str(lab.config)).stdout
    assert "1 edited on iris-b outside mirrorsync" in text

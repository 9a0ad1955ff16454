"""End to end: `mirrorsync doctor` against the lab (real sshd per member, simulated IRIS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mirrorsync.lab.lab import LabInfo
from mirrorsync.sim.host import SimHost

pytestmark = pytest.mark.lab

OAUTH2 = (
    "OAuth2.Server.ClientD",
    "OAuth2.Server.ClientI",
    "OAuth2.Server.ClientS",
    "OAuth2.Client.MetaDataD",
    "OAuth2.Client.MetaDataI",
    "OAuth2.Client.MetaDataS",
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "mirrorsync", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )


def hosts(lab: LabInfo) -> dict[str, SimHost]:
    """Every member's simulated IRIS, opened straight from disk."""
    return {m.name: SimHost(Path(m.iris_home)) for m in lab.members}


def oauth2_state(lab: LabInfo) -> dict[str, dict[str, Any]]:
    """Every OAuth2 node of every member (to prove doctor changed none)."""
    return {name: {g: host.nodes(g) for g in OAUTH2} for name, host in hosts(lab).items()}


def statuses(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(member or mirror, check id) -> status, from doctor's JSON."""
    (mirror,) = document["mirrors"]
    found = {(mirror["name"], c["id"]): c["status"] for c in mirror["checks"]}
    for member in mirror["members"]:
        found.update({(member["name"], c["id"]): c["status"] for c in member["checks"]})
    return found


def doctor_leftovers(lab: LabInfo) -> list[str]:
    """Private remote directories doctor made under the lab's remote_tmp_dir."""
    return sorted(p.name for p in (lab.directory / "remote-tmp").glob("mirrorsync-doctor-*"))


def test_doctor_passes_on_the_lab_and_changes_nothing(lab: LabInfo) -> None:
    """Every check passes (exit 0), the scratch global and temp dirs are gone, OAuth2 data is
    unchanged, and the JSON carries versions and $ZV but no host address."""
    before = oauth2_state(lab)
    result = run_cli("doctor", "-c", str(lab.config), "--format", "json")
    assert 0 == result.returncode, result.stdout + result.stderr
    document = json.loads(result.stdout)
    found = statuses(document)
    assert dict.fromkeys(found, "PASS") == found
    assert {
        "mirror-roles",
        "mirror-versions",
        "mirror-mapping",
        "ssh",
        "iris-session",
        "version-layout",
        "oauth2-location",
        "scratch-load-kills",
        "scratch-load-transaction",
        "scratch-binary",
        "scratch-cleanup",
        "privileges",
        "items-present",
        "export-items",
    } == {check for _, check in found}
    member = document["mirrors"][0]["members"][0]
    assert ("2025.1", "classic", "os", "PASS", 0) == (
        member["version"],
        member["layout"],
        member["login"],
        document["outcome"],
        document["exit_code"],
    )
    assert "2025.1 (Build" in member["zv"]
    assert "127.0.0." not in result.stdout
    binary = next(c for c in member["checks"] if c["id"] == "scratch-binary")
    assert "DataBase64" in binary["detail"]
    assert before == oauth2_state(lab)
    assert {name: [] for name in before} == {
        name: host.nodes("mirrorsync.doctor") for name, host in hosts(lab).items()
    }
    assert [] == doctor_leftovers(lab)


def test_doctor_fails_a_merging_load_and_a_non_transactional_load(lab: LabInfo) -> None:
    """A member whose Load merges fails scratch-load-kills, one whose Load ignores TROLLBACK
    fails scratch-load-transaction; exit 1, text ends FAIL, nothing is left behind."""
    by_name = hosts(lab)
    by_name["iris-b"].update_settings(load_kill="merge")
    by_name["iris-c"].update_settings(load_transactional=False)
    before = oauth2_state(lab)
    result = run_cli("doctor", "-c", str(lab.config))
    assert 1 == result.returncode, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert "FAIL" == lines[-1]
    failed = sorted(
        (member, line.split()[1])
        for member, line in _member_lines(lines)
        if line.split()[0] == "FAIL"
    )
    assert [("iris-b", "scratch-load-kills"), ("iris-c", "scratch-load-transaction")] == failed
    assert before == oauth2_state(lab)
    assert {name: [] for name in by_name} == {
        name: host.nodes("mirrorsync.doctor") for name, host in by_name.items()
    }


def _member_lines(lines: list[str]) -> list[tuple[str, str]]:
    """(member, check line) pairs from doctor's text output."""
    pairs: list[tuple[str, str]] = []
    member = ""
    for line in lines:
        if line.startswith("  ") and not line.startswith("    "):
            member = line.split()[0]
        elif line.startswith("    ") and line.split()[0] in ("PASS", "FAIL", "UNKNOWN"):
            pairs.append((member, line.strip()))
    return pairs


def test_globals_in_a_mirrored_database_are_left_to_mirroring(lab: LabInfo) -> None:
    """With ^OAuth2.Server.ClientD/I mapped into a mirrored database on every member, doctor says
    so, drift warns and compares only the other globals, and sync does not write them."""
    mirrored = ("OAuth2.Server.ClientD", "OAuth2.Server.ClientI")
    for host in hosts(lab).values():
        host.update_settings(mirrored_globals=mirrored)
    result = run_cli("doctor", "-c", str(lab.config), "--member", "iris-b", "--format", "json")
    assert 0 == result.returncode, result.stdout + result.stderr
    (member,) = json.loads(result.stdout)["mirrors"][0]["members"]
    location = next(c for c in member["checks"] if c["id"] == "oauth2-location")
    assert ("PASS", True) == (location["status"], "OAUTH2MIRROR" in location["detail"])

    drift = run_cli("drift", "-c", str(lab.config), "--format", "json")
    document = json.loads(drift.stdout)
    compared = {d["global"] for m in document["members"] for d in m["differences"]}
    assert set() == compared & set(mirrored)
    assert 1 == sum("^OAuth2.Server.ClientD is mapped" in w for w in document["warnings"])
    backup_clients = hosts(lab)["iris-b"].nodes("OAuth2.Server.ClientD")
    sync = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 0 == sync.returncode, sync.stdout + sync.stderr
    assert backup_clients == hosts(lab)["iris-b"].nodes("OAuth2.Server.ClientD")

"""`mirrorsync hostkeys scan|trust` against a lab mirror of real sshd's (and a real bastion)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from mirrorsync.cli_hostkeys import hostkeys_group
from mirrorsync.lab import LabInfo
from mirrorsync.lab.testing import SshdServer
from mirrorsync.ssh import fingerprint

pytestmark = pytest.mark.lab


def _hostkeys(*args: str, stdin: str | None = None) -> Result:
    """Run `mirrorsync hostkeys ...` in-process; logs are captured so stdout holds the report."""
    with capture_logs():
        return CliRunner().invoke(hostkeys_group, list(args), input=stdin, catch_exceptions=False)


def _host_fingerprint(lab: LabInfo, name: str) -> str:
    """The fingerprint of a lab member's ed25519 host key, read from its sshd directory."""
    key = paramiko.PKey.from_path(lab.directory / "hosts" / name / "ssh_host_ed25519_key")
    return fingerprint(key)


@pytest.fixture
def small_lab(lab_factory: Callable[..., LabInfo]) -> LabInfo:
    """A two-member lab (the smallest mirror) with few clients."""
    return lab_factory(members=2, clients=5)


def test_scan_shows_every_member_pinned(small_lab: LabInfo) -> None:
    """On a lab whose keys are all pinned, scan lists each fingerprint as pinned and exits 0."""
    result = _hostkeys("scan", "-c", str(small_lab.config), "--format", "json")
    hosts = json.loads(result.stdout)["hosts"]
    expected = [
        ("member iris-a", _host_fingerprint(small_lab, "iris-a"), "pinned"),
        ("member iris-b", _host_fingerprint(small_lab, "iris-b"), "pinned"),
    ]
    assert (0, expected) == (
        result.exit_code,
        [(h["target"], h["fingerprint"], h["status"]) for h in hosts],
    )


def test_trust_pins_only_after_confirmation(small_lab: LabInfo) -> None:
    """With an empty known_hosts, `trust` shows the fingerprint, pins on "y", and not on "n"."""
    small_lab.known_hosts.write_text("", encoding="ascii")
    config = str(small_lab.config)
    declined = _hostkeys("trust", "-c", config, "--member", "iris-b", stdin="n\n")
    assert (1, "", True) == (
        declined.exit_code,
        small_lab.known_hosts.read_text(),
        _host_fingerprint(small_lab, "iris-b") in declined.output,
    )
    accepted = _hostkeys("trust", "-c", config, "--member", "iris-b", stdin="y\n")
    member = small_lab.members[1]
    line = f"[{member.address}]:{member.port} ssh-ed25519 "
    assert (0, True) == (accepted.exit_code, small_lab.known_hosts.read_text().startswith(line))
    scan = json.loads(_hostkeys("scan", "-c", config, "--format", "json").stdout)["hosts"]
    assert ["unknown", "pinned"] == [h["status"] for h in scan]


def test_trust_with_expected_fingerprint(small_lab: LabInfo) -> None:
    """--expect-fingerprint pins without a prompt when it matches and refuses when it does not."""
    small_lab.known_hosts.write_text("", encoding="ascii")
    config = str(small_lab.config)
    wrong = _hostkeys(
        "trust", "-c", config, "--member", "iris-a", "--expect-fingerprint", "SHA256:nope"
    )
    assert (1, "") == (wrong.exit_code, small_lab.known_hosts.read_text())
    right = _hostkeys(
        "trust",
        "-c",
        config,
        "--member",
        "iris-a",
        "--expect-fingerprint",
        _host_fingerprint(small_lab, "iris-a"),
    )
    assert (0, 1) == (right.exit_code, len(small_lab.known_hosts.read_text().splitlines()))


def test_changed_key_is_never_replaced(small_lab: LabInfo, tmp_path: Path) -> None:
    """A member whose pinned key differs is shown as changed, and trust --yes refuses it."""
    other = paramiko.Ed25519Key.from_private_key_file(str(small_lab.identity_file))
    member = small_lab.members[0]
    lines = small_lab.known_hosts.read_text().splitlines()
    lines[0] = f"[{member.address}]:{member.port} {other.get_name()} {other.get_base64()}"
    small_lab.known_hosts.write_text("\n".join(lines) + "\n", encoding="ascii")
    before = small_lab.known_hosts.read_text()
    config = str(small_lab.config)
    scan = _hostkeys("scan", "-c", config)
    trust = _hostkeys("trust", "-c", config, "--member", "iris-a", "--yes")
    assert (1, True, 1, before) == (
        scan.exit_code,
        "CHANGED" in scan.output,
        trust.exit_code,
        small_lab.known_hosts.read_text(),
    )


def test_jump_host_is_scanned_and_trusted_first(
    small_lab: LabInfo, sshd_factory: Callable[..., SshdServer]
) -> None:
    """Behind an unpinned bastion the member cannot be scanned; pinning the bastion fixes it."""
    bastion = sshd_factory(address="127.0.0.40", allow_tcp_forwarding=True)
    # The bastion accepts the lab's client key too.
    bastion.authorized_keys.write_text(Path(f"{small_lab.identity_file}.pub").read_text())
    data: dict[str, Any] = yaml.safe_load(small_lab.config.read_text())
    data["ssh"]["jump_host"] = {
        "host": bastion.host,
        "port": bastion.port,
        "user": bastion.user,
        "identity_file": str(small_lab.identity_file),
    }
    small_lab.config.write_text(yaml.safe_dump(data))
    config = str(small_lab.config)
    before = json.loads(_hostkeys("scan", "-c", config, "--format", "json").stdout)["hosts"]
    assert [("jump host of iris-a", "unknown"), ("member iris-a", "error")] == [
        (h["target"], h["status"]) for h in before[:2]
    ]
    trusted = _hostkeys("trust", "-c", config, "--member", "iris-a", "--jump", "--yes")
    after = _hostkeys("scan", "-c", config, "--format", "json")
    assert (0, 0, ["pinned", "pinned", "pinned"]) == (
        trusted.exit_code,
        after.exit_code,
        [h["status"] for h in json.loads(after.stdout)["hosts"]],
    )

"""The lab: N real sshd's on loopback, each serving its own simulated IRIS member."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorsync.config import load_config
from mirrorsync.lab import LabError, LabInfo, lab_down, lab_up
from mirrorsync.lab import lab as lab_module
from mirrorsync.lab.sshd import SSHD, sshd_available, start_sshd, write_private_key
from mirrorsync.ssh import Endpoint, SshConnection, SshSettings

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not sshd_available(), reason=f"{SSHD} is missing; CI installs it"),
]

IS_PRIMARY = b"write $SYSTEM.Mirror.IsPrimary(),!\nhalt\n"


def connect(lab: LabInfo, index: int) -> SshConnection:
    member = lab.members[index]
    return SshConnection(
        Endpoint(member.address, member.port, member.user, Path(member.identity_file)),
        SshSettings(known_hosts=lab.known_hosts, connect_timeout=5),
        name=member.name,
    )


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def test_each_member_runs_iris_with_its_role(lab: LabInfo) -> None:
    """Over SSH, `iris session IRIS -U %SYS` reaches each member's own simulator and role."""
    answers = {}
    for index, member in enumerate(lab.members):
        with connect(lab, index) as connection:
            result = connection.run(
                ["iris", "session", "IRIS", "-U", "%SYS"], stdin=IS_PRIMARY, timeout=30
            )
        assert 0 == result.exit_status, result.stderr
        answers[member.name] = [line.strip() for line in result.stdout.decode().splitlines()]
    assert ["primary", "backup", "async"] == [member.role for member in lab.members]
    assert "1" in answers["iris-a"]
    assert "0" in answers["iris-b"]
    assert "0" in answers["iris-c"]
    assert "1" not in answers["iris-b"] + answers["iris-c"]


def test_iris_is_only_on_each_members_own_path(lab: LabInfo) -> None:
    """`iris` is not on this process's PATH; each sshd's sessions find their own wrapper."""
    assert shutil.which("iris") is None
    for index, member in enumerate(lab.members):
        with connect(lab, index) as connection:
            result = connection.run(["sh", "-c", "command -v iris"], timeout=10)
        expected = lab.directory / "hosts" / member.name / "bin" / "iris"
        assert str(expected) == result.stdout.decode().strip()


def test_files_written(lab: LabInfo) -> None:
    """config.yaml has the documented shape; hosts.json and known_hosts describe every member."""
    config = yaml.safe_load(lab.config.read_text())
    assert lab.config.read_text().startswith("# Written by `mirrorsync lab up`")
    directory = str(lab.directory)
    assert {
        "known_hosts": f"{directory}/known_hosts",
        "connect_timeout": 5,
        "banner_timeout": 10,
        "auth_timeout": 10,
        "command_timeout": 60,
        "transfer_timeout": 120,
    } == config["ssh"]
    assert f"{directory}/state" == config["state_dir"]
    (mirror,) = config["mirrors"]
    assert ("LABMIRROR", str(lab.directory / "remote-tmp")) == (
        mirror["name"],
        mirror["remote_tmp_dir"],
    )
    assert [
        {
            "name": member.name,
            "host": member.address,
            "port": member.port,
            "user": member.user,
            "identity_file": f"{directory}/id_ed25519",
            "instance": "IRIS",
        }
        for member in lab.members
    ] == mirror["members"]
    assert ["127.0.0.11", "127.0.0.12", "127.0.0.13"] == [m.address for m in lab.members]
    hosts = json.loads((lab.directory / "hosts.json").read_text())
    assert [m.sshd_pid for m in lab.members] == [entry["sshd_pid"] for entry in hosts]
    pinned = [line.split()[0] for line in lab.known_hosts.read_text().splitlines()]
    assert [f"[{m.address}]:{m.port}" for m in lab.members] == pinned
    assert 0o600 == os.stat(lab.identity_file).st_mode & 0o777


def test_config_is_valid_for_mirrorsync(lab: LabInfo) -> None:
    """The lab's config.yaml passes mirrorsync's own configuration validation."""
    config = load_config(lab.config)
    assert ["iris-a", "iris-b", "iris-c"] == [m.name for m in config.mirrors[0].members]


def test_primary_has_clients_and_others_drift(lab: LabInfo) -> None:
    """The primary holds the seeded clients; every other member differs from it."""
    from mirrorsync.sim.host import SimHost

    def records(index: int) -> list[Any]:
        return SimHost(Path(lab.members[index].iris_home)).nodes("OAuth2.Server.ClientD")

    primary = records(0)
    assert primary
    assert all(records(index) != primary for index in (1, 2))
    assert {"iris-b", "iris-c"} == set(lab.drift)


def test_admin_ssh_command_reaches_the_simulator(lab: LabInfo) -> None:
    """The printed `ssh ... iris session IRIS -U %SYS` works with the OpenSSH client."""
    ssh = shutil.which("ssh")
    if ssh is None:
        pytest.skip("the OpenSSH client is not installed")
    member = lab.members[0]
    # -F /dev/null: the client must not pick up the developer's ~/.ssh/config.
    command = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", *member.ssh_command().split()[1:]]
    result = subprocess.run(command, input=IS_PRIMARY, capture_output=True, timeout=30, check=False)
    assert 0 == result.returncode, result.stderr
    assert "1" in [line.strip() for line in result.stdout.decode().splitlines()]


def test_lab_down_stops_every_sshd_and_is_idempotent(lab: LabInfo) -> None:
    """After lab down no sshd of the lab runs or listens; a second lab down is harmless."""
    lab_down(lab.directory)
    for member in lab.members:
        assert not pid_alive(member.sshd_pid)
        assert not accepts(member.address, member.port)
    lab_down(lab.directory)
    assert (lab.directory / "hosts.json").exists()


def test_lab_up_on_a_running_lab_fails_and_on_a_stopped_one_replaces(lab: LabInfo) -> None:
    """A second lab up while the lab runs is refused; after lab down it builds a fresh lab."""
    with pytest.raises(LabError, match="already running"):
        lab_up(lab.directory, members=2, clients=5)
    assert all(pid_alive(member.sshd_pid) for member in lab.members)
    lab_down(lab.directory)
    again = lab_up(lab.directory, members=2, clients=5)
    try:
        assert ["iris-a", "iris-b"] == [member.name for member in again.members]
        assert 2 == len(json.loads((lab.directory / "hosts.json").read_text()))
        assert not (lab.directory / "hosts" / "iris-c").exists()
    finally:
        lab_down(lab.directory)


def test_lab_factory_variants(lab_factory: Callable[..., LabInfo]) -> None:
    """Member count and roles follow the options: 4 members give primary, backup, 2 async."""
    lab = lab_factory(members=4, clients=5)
    assert ["primary", "backup", "async", "async"] == [member.role for member in lab.members]
    assert "iris-d" == lab.members[3].name


def test_failed_start_stops_what_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If one member's sshd does not start, lab up stops the ones already running."""
    started: list[Any] = []
    real_start = start_sshd

    def start_then_fail(directory: Path, **options: Any) -> Any:
        if started:
            raise LabError("simulated failure of the second sshd")
        started.append(real_start(directory, **options))
        return started[-1]

    monkeypatch.setattr(lab_module, "start_sshd", start_then_fail)
    with pytest.raises(LabError, match="simulated failure"):
        lab_up(tmp_path / "lab", members=3, clients=5)
    assert 1 == len(started)
    assert not pid_alive(started[0].pid)


def test_sshd_that_cannot_start_shows_its_log(tmp_path: Path) -> None:
    """An sshd that exits at start-up is reported with the tail of its log."""
    server = tmp_path / "server"
    server.mkdir()
    (server / "ssh_host_ed25519_key").write_text("not a key\n")
    keys = tmp_path / "authorized_keys"
    keys.write_text(write_private_key(tmp_path / "id") + "\n")
    with pytest.raises(LabError, match="did not start") as caught:
        start_sshd(
            server,
            name="broken",
            address="127.0.0.11",
            authorized_keys=keys,
            user=getpass.getuser(),
        )
    assert "sshd log" in str(caught.value)
    assert "host" in str(caught.value).lower()


def test_lab_down_from_another_process(lab: LabInfo) -> None:
    """`lab down` works from a process other than the one that ran `lab up` (as the CLI does)."""
    code = "import sys; from pathlib import Path; from mirrorsync.lab import lab_down; "
    code += "lab_down(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(lab.directory)], check=True, timeout=60)
    for member in lab.members:
        assert not accepts(member.address, member.port)


def test_lab_down_purge_removes_the_lab_directory(lab_factory: Callable[..., LabInfo]) -> None:
    """`purge=True` stops the lab and deletes its directory."""
    lab = lab_factory(members=2, clients=5)
    lab_down(lab.directory, purge=True)
    assert not lab.directory.exists()
    assert not accepts(lab.members[0].address, lab.members[0].port)


def test_purge_never_deletes_a_directory_without_a_lab(tmp_path: Path) -> None:
    """lab_down on a directory that holds no lab leaves it and its files alone."""
    (tmp_path / "precious.txt").write_text("keep")
    lab_down(tmp_path, purge=True)
    assert "keep" == (tmp_path / "precious.txt").read_text()

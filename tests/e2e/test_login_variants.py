"""IRIS login variants over real sshd: passwords from a systemd credential, sudo, iris path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mirrorsync.config.model import Credentials
from mirrorsync.errors import IrisLoginError, ProtocolError
from mirrorsync.iris import scripts
from mirrorsync.iris.results import parse_probe
from mirrorsync.iris.terminal import IrisTerminal
from mirrorsync.lab import LabInfo
from mirrorsync.sim.host import SimHost, UserSpec
from mirrorsync.ssh import Endpoint, SshConnection, SshSettings

pytestmark = pytest.mark.lab

FAKE_SUDO = """#!/bin/sh
# Lab stand-in for sudo (only this member's sshd has it on PATH): accepts exactly the shape
# mirrorsync sends, `sudo -n -u USER -- COMMAND...`, records USER, and runs COMMAND.
if [ "$1" != "-n" ] || [ "$2" != "-u" ] || [ "$4" != "--" ]; then
  echo "sudo: unexpected arguments: $*" >&2; exit 1
fi
echo "$3" > "$MIRRORSYNC_SIM_HOME/../sudo-user"
shift 4
exec "$@"
"""

REFUSING_SUDO = """#!/bin/sh
echo "sudo: a password is required" >&2
exit 1
"""


@pytest.fixture
def small_lab(lab_factory: Callable[..., LabInfo]) -> LabInfo:
    """A two-member lab with few clients."""
    return lab_factory(members=2, clients=5)


def _terminal(
    lab: LabInfo,
    *,
    credentials: Credentials | None = None,
    sudo_user: str | None = None,
    iris_command: str = "iris",
) -> IrisTerminal:
    """An IRIS terminal on the lab primary over a real SSH connection."""
    member = lab.members[0]
    connection = SshConnection(
        Endpoint(member.address, member.port, member.user, Path(member.identity_file)),
        SshSettings(known_hosts=lab.known_hosts),
        name=member.name,
    )
    return IrisTerminal(
        runner=connection,
        member=member.name,
        iris_command=iris_command,
        instance=member.instance,
        namespace="%SYS",
        timeout=30,
        credentials=credentials.resolve if credentials is not None else None,
        sudo_user=sudo_user,
    )


def _password_login(lab: LabInfo, password: str) -> None:
    """Turn OS authentication off on the primary; user ``msync`` with ``password``."""
    SimHost(Path(lab.members[0].iris_home)).update_settings(
        os_auth=False, users={"msync": UserSpec.with_password(password)}
    )


def _probe_version(terminal: IrisTerminal) -> str:
    """Run the probe script and return the version it reports."""
    payload = terminal.execute(scripts.probe, what="probe")
    return parse_probe(payload, "probe").version


def test_password_from_systemd_credential(
    small_lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without OS authentication, a password from $CREDENTIALS_DIRECTORY logs in."""
    _password_login(small_lab, "cred-pw-1")
    (tmp_path / "iris-password").write_text("cred-pw-1\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    credentials = Credentials(username="msync", password_credential="iris-password")
    assert "2025.1" == _probe_version(_terminal(small_lab, credentials=credentials))


def test_wrong_password_is_a_login_failure_without_the_password(
    small_lab: LabInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused login raises IrisLoginError (not a parse error) and never shows the password."""
    _password_login(small_lab, "right-pw")
    monkeypatch.setenv("WRONG_PW", "wrong-pw-value")
    credentials = Credentials(username="msync", password_env="WRONG_PW")
    with pytest.raises(IrisLoginError) as caught:
        _probe_version(_terminal(small_lab, credentials=credentials))
    assert (True, False) == (
        "refused the login" in str(caught.value),
        "wrong-pw-value" in str(caught.value),
    )


def test_sudo_to_the_instance_owner_with_an_absolute_iris_path(small_lab: LabInfo) -> None:
    """sudo_user runs `sudo -n -u OWNER -- /path/iris session ...` on the member."""
    host_dir = small_lab.directory / "hosts" / small_lab.members[0].name
    sudo = host_dir / "bin" / "sudo"
    sudo.write_text(FAKE_SUDO)
    sudo.chmod(0o755)
    terminal = _terminal(
        small_lab, sudo_user="irisowner", iris_command=str(host_dir / "bin" / "iris")
    )
    assert ("2025.1", "irisowner\n") == (
        _probe_version(terminal),
        (host_dir / "sudo-user").read_text(),
    )


def test_sudo_asking_for_a_password_is_reported(small_lab: LabInfo) -> None:
    """When sudo wants a password, the error carries sudo's own message."""
    host_dir = small_lab.directory / "hosts" / small_lab.members[0].name
    sudo = host_dir / "bin" / "sudo"
    sudo.write_text(REFUSING_SUDO)
    sudo.chmod(0o755)
    with pytest.raises(ProtocolError, match="sudo: a password is required"):
        _probe_version(_terminal(small_lab, sudo_user="irisowner"))

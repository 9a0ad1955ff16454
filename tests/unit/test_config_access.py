"""Configuration of how members are reached: jump hosts, sudo, systemd credentials (issue 6)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mirrorsync.config import load_config
from mirrorsync.config.model import Credentials, JumpHostConfig
from mirrorsync.errors import ConfigError
from mirrorsync.iris.scripts import session_argv

JUMPS = """
ssh:
  jump_host: {host: bastion.example, user: hop, identity_file: hop_key}
mirrors:
  - name: M
    members:
      - {name: a, host: a.example, user: ms, identity_file: key, instance: IRIS}
      - name: b
        host: b.example
        user: ms
        identity_file: key
        instance: IRIS
        sudo_user: irisowner
        jump_host: {host: other.example, port: 2200, user: hop2, identity_file: /k2}
      - {name: c, host: c.example, user: ms, identity_file: key, instance: IRIS, jump_host: null}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_global_member_and_null_jump_hosts(tmp_path: Path) -> None:
    """ssh.jump_host applies by default, a member's own wins, and null means direct."""
    members = load_config(write(tmp_path, JUMPS)).mirrors[0].members
    assert [
        JumpHostConfig("bastion.example", "hop", tmp_path.resolve() / "hop_key", 22),
        JumpHostConfig("other.example", "hop2", Path("/k2"), 2200),
        None,
    ] == [member.jump_host for member in members]


def test_sudo_user_is_read_per_member(tmp_path: Path) -> None:
    """sudo_user is per member and absent by default."""
    members = load_config(write(tmp_path, JUMPS)).mirrors[0].members
    assert [None, "irisowner", None] == [member.sudo_user for member in members]


def test_unknown_key_in_a_jump_host_is_an_error(tmp_path: Path) -> None:
    """A jump host with an unknown key is refused like any other unknown key."""
    text = JUMPS.replace("user: hop,", "user: hop, password: x,")
    with pytest.raises(ConfigError, match=r"At 'ssh.jump_host'"):
        load_config(write(tmp_path, text))


def test_sudo_user_must_look_like_a_user_name(tmp_path: Path) -> None:
    """A sudo_user that could carry shell syntax is rejected by the schema."""
    text = JUMPS.replace("sudo_user: irisowner", "sudo_user: 'root; id'")
    with pytest.raises(ConfigError, match=r"members\[1\].sudo_user"):
        load_config(write(tmp_path, text))


def test_session_argv_with_and_without_sudo() -> None:
    """With sudo_user the session runs as `sudo -n -u USER -- iris session ...`."""
    assert ("iris", "session", "IRIS", "-U", "%SYS") == session_argv("iris", "IRIS", "%SYS")
    assert (
        "sudo",
        "-n",
        "-u",
        "irisowner",
        "--",
        "/usr/irissys/bin/iris",
        "session",
        "IRIS",
        "-U",
        "%SYS",
    ) == session_argv("/usr/irissys/bin/iris", "IRIS", "%SYS", sudo_user="irisowner")


def test_password_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password_credential reads $CREDENTIALS_DIRECTORY/NAME when the session needs it."""
    (tmp_path / "iris-pw").write_text("s3cret line\nignored\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    credentials = Credentials(username="ms", password_credential="iris-pw")
    assert ("ms", "s3cret line") == credentials.resolve()


def test_missing_credentials_directory_names_the_credential_not_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without $CREDENTIALS_DIRECTORY the error says so and names the credential."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"CREDENTIALS_DIRECTORY is not set.*LoadCredential=pw"):
        Credentials(username="ms", password_credential="pw").resolve()


def test_two_password_sources_are_refused(tmp_path: Path) -> None:
    """password_credential together with password_env is a configuration error."""
    text = JUMPS + textwrap.dedent(
        """
        iris:
          credentials: {username: ms, password_env: PW, password_credential: pw}
        """
    )
    with pytest.raises(ConfigError, match="exactly one of password_env"):
        load_config(write(tmp_path, text))

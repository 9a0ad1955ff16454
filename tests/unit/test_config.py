"""Configuration loading and validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorsync.cli import main_group
from mirrorsync.config import load_config
from mirrorsync.config.model import Credentials
from mirrorsync.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
mirrors:
  - name: M
    members:
      - {name: a, host: a.example, user: ms, identity_file: key, instance: IRIS}
      - {name: b, host: b.example, user: ms, identity_file: key, instance: IRIS, port: 2222}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_example_config_is_valid() -> None:
    """The shipped config.example.yaml validates and documents a three-member mirror."""
    config = load_config(REPO / "config.example.yaml")
    assert ["iris-a", "iris-b", "iris-dr"] == [m.name for m in config.mirrors[0].members]
    assert "MIRRORSYNC_IRIS_PASSWORD" == config.iris.credentials.password_env  # type: ignore[union-attr]


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    """Omitted keys take documented defaults; relative paths resolve against the file's folder."""
    config = load_config(write(tmp_path, MINIMAL))
    member_a, member_b = config.mirrors[0].members
    assert 22 == member_a.port
    assert 2222 == member_b.port
    assert tmp_path.resolve() / "key" == member_a.identity_file
    assert "iris" == member_a.iris_command
    assert "%SYS" == config.iris.namespace
    assert None is config.iris.credentials
    assert (
        "OAuth2.Server.ClientD",
        "OAuth2.Server.ClientI",
        "OAuth2.Server.ClientS",
        "OAuth2.Client.MetaDataD",
        "OAuth2.Client.MetaDataI",
        "OAuth2.Client.MetaDataS",
    ) == config.items.global_names()


def test_errors_name_file_and_path(tmp_path: Path) -> None:
    """Every schema violation is reported with the file name and the JSON path of the key."""
    path = write(
        tmp_path,
        MINIMAL.replace("port: 2222", "port: 70000, colour: blue") + "surprise: 1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert (
        f"{path}: At 'mirrors[0].members[1].port': 70000 is greater than the maximum of 65535"
        in lines
    )
    assert any(
        "mirrors[0].members[1]'" in line and "'colour' was unexpected" in line for line in lines
    )
    assert any("<top level>" in line and "'surprise' was unexpected" in line for line in lines)


def test_shell_metacharacters_rejected(tmp_path: Path) -> None:
    """Config values that end up on a remote command line cannot carry shell syntax."""
    path = write(
        tmp_path, MINIMAL.replace("instance: IRIS, port", "instance: 'IRIS;rm -rf /', port")
    )
    with pytest.raises(ConfigError, match=r"members\[1\].instance"):
        load_config(path)


def test_inline_password_is_not_accepted(tmp_path: Path) -> None:
    """A password written inline is an unknown key: secrets come from env or file only."""
    path = write(tmp_path, MINIMAL + "iris:\n  credentials: {username: u, password: hunter2}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "'password' was unexpected" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    """Broken YAML is reported with the line and column."""
    path = write(tmp_path, "mirrors: [\n  - name: x\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: invalid YAML"):
        load_config(path)


def test_two_members_on_one_endpoint(tmp_path: Path) -> None:
    """Two members at the same host and port are a config error, not 'two primaries' later."""
    path = write(
        tmp_path, MINIMAL.replace("host: b.example", "host: a.example").replace(", port: 2222", "")
    )
    with pytest.raises(ConfigError, match=r"'b' has the same host and port as 'a'"):
        load_config(path)


def test_duplicate_member_names(tmp_path: Path) -> None:
    """Two members with one name are refused, naming the second one's path."""
    path = write(tmp_path, MINIMAL.replace("name: b,", "name: a,"))
    with pytest.raises(ConfigError, match=r"members\[1\].name': duplicate member name 'a'"):
        load_config(path)


def test_credentials_resolve_late_and_never_echo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passwords are read from env or file when needed; errors name the source, not the value."""
    monkeypatch.setenv("MS_PW", "s3cret-value")
    assert ("u", "s3cret-value") == Credentials(username="u", password_env="MS_PW").resolve()
    secret_file = tmp_path / "pw"
    secret_file.write_text("file-secret\n")
    secret_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        Credentials(username="u", password_file=secret_file).resolve()
    secret_file.chmod(0o640)
    assert ("u", "file-secret") == Credentials(username="u", password_file=secret_file).resolve()
    monkeypatch.delenv("MS_PW")
    with pytest.raises(ConfigError, match="MS_PW is not set"):
        Credentials(username="u", password_env="MS_PW").resolve()


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    """`config validate` prints OK (exit 0) or the errors (exit 78, EX_CONFIG)."""
    from mirrorsync.cli import main

    good = write(tmp_path, MINIMAL + f"ssh: {{known_hosts: {tmp_path}/known_hosts}}\n")
    with pytest.raises(SystemExit) as missing:
        main(["config", "validate", "-c", str(good)])
    assert 78 == missing.value.code  # the key and known_hosts files do not exist yet
    (tmp_path / "key").write_text("")
    (tmp_path / "known_hosts").write_text("")
    with pytest.raises(SystemExit) as ok:
        main(["config", "validate", "-c", str(good)])
    assert 0 == ok.value.code
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("instance: IRIS}", "instance: IRIS, port: 0}", 1))
    with pytest.raises(SystemExit) as failed:
        main(["config", "validate", "-c", str(bad)])
    assert 78 == failed.value.code


def test_usage_error_is_64() -> None:
    """A usage error exits 64, never click's 2 (which means drift here)."""
    from mirrorsync.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["drift", "--no-such-option"])
    assert 64 == caught.value.code


def test_missing_config_file_is_78(tmp_path: Path) -> None:
    """A missing config file is a configuration error (78) naming the path."""
    result = CliRunner().invoke(
        main_group, ["config", "validate", "-c", str(tmp_path / "nope.yaml")]
    )
    assert isinstance(result.exception, ConfigError)
    assert "nope.yaml: configuration file not found" in str(result.exception)

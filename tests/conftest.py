"""Shared fixtures: real sshd instances on loopback (`sshd`) and whole lab mirrors (`lab`).

Everything these fixtures use is explicit (key files, known_hosts, sshd_config in tmp_path). The
developer's own ~/.ssh must never be consulted: `_no_personal_ssh` points HOME at an empty
directory, drops the agent socket and makes paramiko's SSHClient (which reads ~/.ssh) unusable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from mirrorsync.lab import LabInfo, lab_down, lab_up
from mirrorsync.lab.sshd import SSHD, SshdInstance, sshd_available, stop_sshd
from mirrorsync.lab.testing import SshdServer, make_sshd_server

SSHD_MISSING = f"{SSHD} is missing (apt-get install openssh-server); CI installs it"


@pytest.fixture(autouse=True)
def _no_personal_ssh(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make any accidental use of the developer's SSH setup fail instead of silently working."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("empty-home")))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("paramiko.SSHClient reads ~/.ssh; mirrorsync must not use it")

    monkeypatch.setattr(paramiko, "SSHClient", refuse)


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator[Callable[..., SshdServer]]:
    """Start sshd instances (`make_sshd_server` options), all stopped after the test."""
    if not sshd_available():
        pytest.skip(SSHD_MISSING)
    started: list[SshdInstance] = []

    def make(**options: Any) -> SshdServer:
        base = tmp_path / f"sshd-{len(started)}"
        base.mkdir()
        server = make_sshd_server(base, **options)
        started.append(server.instance)
        return server

    yield make
    for instance in started:
        stop_sshd(instance.pid, instance.config)


@pytest.fixture
def sshd(sshd_factory: Callable[..., SshdServer]) -> SshdServer:
    """One sshd on 127.0.0.11 with an ed25519 host key pinned in its own known_hosts."""
    return sshd_factory()


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Callable[..., LabInfo]]:
    """Build lab mirrors (`lab_up` options: members, clients, seed), all torn down after."""
    if not sshd_available():
        pytest.skip(SSHD_MISSING)
    directories: list[Path] = []

    def make(**options: Any) -> LabInfo:
        directory = tmp_path / f"lab-{len(directories)}"
        directories.append(directory)
        return lab_up(directory, **options)

    yield make
    for directory in directories:
        lab_down(directory)


@pytest.fixture
def lab(lab_factory: Callable[..., LabInfo]) -> LabInfo:
    """A fresh 3-member lab mirror (primary, backup, async) with 12 clients."""
    return lab_factory()

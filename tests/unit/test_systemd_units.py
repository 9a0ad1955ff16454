"""The shipped systemd units pass `systemd-analyze verify` and keep their key settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
NAMES = ("mirrorsync.service", "mirrorsync-sync.service", "mirrorsync-sync.timer")


def test_units_verify(tmp_path: Path) -> None:
    """verify needs each Exec binary to exist: point /usr/local/bin/mirrorsync at a real one."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd); CI installs it")
    real = shutil.which("mirrorsync") or sys.executable
    for name in NAMES:
        text = (UNITS / name).read_text().replace("/usr/local/bin/mirrorsync", real)
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in NAMES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "" == result.stderr.strip(), result.stderr


def test_daemon_unit_settings() -> None:
    """The contract with the daemon: notify + watchdog, reload by HUP, state dir, restarts."""
    lines = {line.strip() for line in (UNITS / "mirrorsync.service").read_text().splitlines()}
    for setting in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=2min",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=mirrorsync",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "User=mirrorsync",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
    ):
        assert setting in lines, setting
    sync = (UNITS / "mirrorsync-sync.service").read_text()
    assert "SuccessExitStatus=2 3 75" in sync

"""Fixtures for simulator tests: a fresh host on disk and an in-process ``iris session`` runner."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mirrorsync.sim.host import HostSettings, SimHost
from mirrorsync.sim.session import Terminal, run_session

from .support import Runner, SessionResult


@pytest.fixture
def host(tmp_path: Path) -> SimHost:
    """A primary failover member with OS authentication."""
    return SimHost.create(
        tmp_path / "host",
        HostSettings(
            node="alpha",
            instance="IRIS",
            mirror_name="MIRRORA",
            mirror_is_member=1,
            mirror_status="PRIMARY",
            mirror_member_type="Failover",
        ),
    )


@pytest.fixture
def run(host: SimHost) -> Runner:
    """Run lines through the session loop in-process (fast); returns status and output."""

    def runner(
        *lines: str,
        namespace: str | None = "%SYS",
        instance: str = "IRIS",
        routine: str | None = None,
        target: SimHost | None = None,
    ) -> SessionResult:
        stdin = io.BytesIO(("\n".join(lines) + "\n").encode() if lines else b"")
        stdout = io.BytesIO()
        stderr = io.BytesIO()
        status = run_session(
            target or host, instance, namespace, routine, Terminal(stdin, stdout, stderr)
        )
        return SessionResult(status, stdout.getvalue().decode(), stderr.getvalue().decode())

    return runner

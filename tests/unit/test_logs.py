"""Logging set-up."""

from __future__ import annotations

import json

import pytest
import structlog

from mirrorsync.logs import configure_logging


def test_json_lines_render_tracebacks_as_data(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a TTY, log lines are JSON and an exception's traceback is kept as structured data."""
    configure_logging("info", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("t").exception("step.failed", member="iris-b")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert ("step.failed", "error", "iris-b") == (line["event"], line["level"], line["member"])
    frames = line["exception"][0]
    assert ("ValueError", "boom") == (frames["exc_type"], frames["exc_value"])


def test_level_filter(capsys: pytest.CaptureFixture[str]) -> None:
    """Events below the configured level are dropped."""
    configure_logging("warning", "json")
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud")
    events = [json.loads(x)["event"] for x in capsys.readouterr().err.strip().splitlines()]
    assert ["loud"] == events

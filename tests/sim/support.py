"""Helpers shared by the simulator tests (imported relatively, never from conftest)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

PROMPT = re.compile(r"(TL\d+:)?[%A-Za-z0-9]+( \d+d0)?>")
"""A bare terminal prompt line such as ``%SYS>`` or ``TL1:USER>``."""


@dataclass
class SessionResult:
    """What one simulated ``iris session`` process produced."""

    status: int
    stdout: str
    stderr: str


Runner = Callable[..., SessionResult]


def body(result: SessionResult) -> str:
    """The output with banner and prompts removed, for compact assertions."""
    text = result.stdout.split("\n", 1)[1] if "\n" in result.stdout else result.stdout
    lines = [line for line in text.split("\n") if line and not PROMPT.fullmatch(line)]
    return "\n".join(lines)


def seeded(seed: int) -> random.Random:
    """A deterministic generator for fixtures (never used for anything secret)."""
    return random.Random(seed)

"""Parse the framed output of one script run through ``iris session``.

The exit status of ``iris session`` says nothing about success (facts §4.4, field note 6): a
result exists only if its frame is complete and well formed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from mirrorsync.errors import IrisError, IrisLoginError, ProtocolError

# A bare terminal prompt, e.g. "%SYS>", "USER 2d0>", "TL1:%SYS>" (facts §4.2, §4.4).
_PROMPT = re.compile(r"^(?:TL\d+:)?%?[A-Za-z0-9._-]+(?: \d+d\d+)?> ?$")
_TAIL_LINES = 8


def _tail(lines: Sequence[str]) -> str:
    """The last non-blank lines of the output, for error messages."""
    kept = [line for line in lines if line.strip()][-_TAIL_LINES:]
    return " | ".join(kept) if kept else "(no output)"


def decode_b64(text: str) -> str:
    """Base64 of UTF-8 (as our scripts print it) back to the IRIS string."""
    try:
        # surrogatepass: an IRIS string may hold a lone UTF-16 surrogate, which $ZCONVERT
        # writes as a 3-byte sequence; it must survive, not stop the run.
        return base64.b64decode(text, validate=True).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed Base64 value in IRIS output: {exc}") from None


def login_refused(output: str) -> bool:
    """Whether the terminal refused the login (facts §4.3: "Access Denied")."""
    return any(line.strip() == "Access Denied" for line in output.splitlines())


def parse_frame(output: str, token: str, *, what: str) -> list[str]:
    """Payload lines of the frame ``token`` in ``output``.

    Raises IrisLoginError when the login was refused, IrisError when the script ended its frame
    with an error (the IRIS error text is included), ProtocolError for anything malformed.
    """
    lines = output.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    begin = f"<<MS:{token}:BEGIN>>"
    end_prefix = f"<<MS:{token}:END:"
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    if not starts:
        if login_refused(output):
            raise IrisLoginError(f"{what}: IRIS refused the login (Access Denied)")
        raise ProtocolError(f"{what}: no result frame in IRIS output: {_tail(lines)}")
    if len(starts) > 1:
        raise ProtocolError(f"{what}: result frame printed more than once")
    payload: list[str] = []
    for line in lines[starts[0] + 1 :]:
        stripped = line.strip()
        if stripped.startswith(end_prefix):
            return _finish(stripped[len(end_prefix) :], payload, what)
        if not stripped or _PROMPT.match(stripped):
            continue
        if stripped.startswith("<<MS:"):
            raise ProtocolError(f"{what}: foreign sentinel inside the frame: {stripped[:80]}")
        payload.append(line)
    raise ProtocolError(f"{what}: result frame not terminated: {_tail(lines)}")


def _finish(status: str, payload: list[str], what: str) -> list[str]:
    if status == "OK>>":
        return payload
    if status.startswith("ERR") and status.endswith(">>"):
        detail = status[3:-2].strip()
        text = decode_b64(detail) if detail else "(no error text)"
        raise IrisError(f"{what}: IRIS reported an error: {text.strip()}")
    raise ProtocolError(f"{what}: malformed end of frame: {status[:80]!r}")

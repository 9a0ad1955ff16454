"""The per-installation fingerprint key: created once 0600, reused, and never a short key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mirrorsync.core.secrets import KEY_FILE, FingerprintKey, SecretPolicy, redact_jwks


def test_key_is_created_0600_and_reused(tmp_path: Path) -> None:
    """The first use creates a 0600 key file in state_dir; later runs fingerprint the same."""
    state = tmp_path / "state"
    first = FingerprintKey.load_or_create(state)
    mode = stat.S_IMODE((state / KEY_FILE).stat().st_mode)
    second = FingerprintKey.load_or_create(state)
    assert (0o600, True) == (mode, first.persistent)
    assert first.fingerprint("secret") == second.fingerprint("secret")


def test_fingerprints_depend_on_the_key(tmp_path: Path) -> None:
    """Two installations fingerprint the same secret differently; the form is fp:+12 hex."""
    one = FingerprintKey.load_or_create(tmp_path / "a").fingerprint("secret")
    two = FingerprintKey.load_or_create(tmp_path / "b").fingerprint("secret")
    assert (True, 15) == (one != two, len(one))


def test_unwritable_state_dir_gives_a_run_only_key(tmp_path: Path) -> None:
    """When the key cannot be stored the run still fingerprints, with a non-persistent key."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with capture_logs() as logs:
        key = FingerprintKey.load_or_create(blocker / "state")
    assert (False, "fp:") == (key.persistent, key.fingerprint("x")[:3])
    assert ["fingerprint_key.unavailable"] == [e["event"] for e in logs]


def test_short_key_file_is_not_used(tmp_path: Path) -> None:
    """A truncated key file (a concurrent first run) is never used as the key."""
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with capture_logs():
        assert False is FingerprintKey.load_or_create(tmp_path).persistent


@pytest.mark.parametrize(
    ("entry", "field", "expected"),
    [
        ("LaunchURL", "LaunchURL", True),
        ("OAuth2.ClientD:Description", "Description", False),
        ("OAuth2.Server.ClientD:slot 21", "slot 21", True),
        ("Other", "ClientPassword", True),
    ],
)
def test_secret_policy(entry: str, field: str, expected: bool) -> None:
    """Configured FIELD and GLOBAL:FIELD entries, plus the built-in secret names, are secret."""
    assert expected == SecretPolicy.of([entry]).is_secret("OAuth2.Server.ClientD", field)


def test_redact_single_jwk_keeps_public_members() -> None:
    """A single private JWK keeps kty/n/e and loses d, p, q."""
    key = FingerprintKey(b"\x02" * 32)
    redacted = redact_jwks('{"kty":"RSA","n":"N","e":"AQAB","d":"D1","p":"P1","q":"Q1"}', key)
    assert redacted is not None
    assert ("D1" in redacted, '"n": "N"' in redacted) == (False, True)
    assert redact_jwks('{"kty":"RSA","n":"N","e":"AQAB"}', key) is None


def test_concurrent_first_use_yields_one_key(tmp_path: Path) -> None:
    """Members compared in parallel on a fresh install all get the same, persistent key."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: FingerprintKey.load_or_create(tmp_path), range(16)))
    assert {(True, keys[0].fingerprint("s"))} == {(k.persistent, k.fingerprint("s")) for k in keys}
    assert [KEY_FILE] == [p.name for p in tmp_path.iterdir()]

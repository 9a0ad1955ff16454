"""Secrets in reports: present/absent and a short keyed fingerprint, never the value.

The fingerprint is an HMAC-SHA256 with a per-installation key (``state_dir/report-fingerprint.key``,
32 random bytes, 0600, created on first use). Two members holding the same secret show the same
fingerprint, so "the secret differs" is visible; without the key a fingerprint cannot be used to
test guesses of the secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from mirrorsync.core.fields import SECRET_FIELD_NAMES

log = structlog.get_logger("mirrorsync.secrets")

KEY_FILE = "report-fingerprint.key"
KEY_BYTES = 32
FINGERPRINT_HEX = 12
_CONTEXT = b"mirrorsync report fingerprint v1\x00"

# RFC 7517/7518 private members of a JWK (EC/OKP "d", RSA CRT parts, symmetric "k").
JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class FingerprintKey:
    """The per-installation HMAC key."""

    def __init__(self, key: bytes, *, persistent: bool = True) -> None:
        self._key = key
        self.persistent = persistent
        """False when the key could not be stored: fingerprints hold for this run only."""

    def __repr__(self) -> str:
        return f"FingerprintKey(persistent={self.persistent})"

    @classmethod
    def load_or_create(cls, state_dir: Path) -> FingerprintKey:
        """Read the key from ``state_dir``, creating it (0600, exclusively) on first use.

        If the state directory is not writable the run still gets a key, valid for this run only.
        """
        path = state_dir / KEY_FILE
        try:
            if not path.exists():
                state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                cls._create(path)
            return cls._read(path)
        except (OSError, ValueError) as exc:
            log.warning(
                "fingerprint_key.unavailable",
                path=str(path),
                error=str(exc),
                effect="fingerprints are valid for this run only",
            )
            return cls(secrets.token_bytes(KEY_BYTES), persistent=False)

    @staticmethod
    def _create(path: Path) -> None:
        """Write a new key to a private temp file, then hard-link it into place: concurrent
        first runs (members are compared in parallel) all end up reading one whole key."""
        descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.write(descriptor, secrets.token_bytes(KEY_BYTES))
            os.fsync(descriptor)
            os.close(descriptor)
            with contextlib.suppress(FileExistsError):  # another run won: use its key
                os.link(temp, path)
        finally:
            os.unlink(temp)

    @classmethod
    def _read(cls, path: Path) -> FingerprintKey:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            # Damaged or foreign: never fingerprint with a short key.
            raise ValueError(f"{path} holds {len(key)} bytes, expected {KEY_BYTES}")
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return cls(key)

    def fingerprint(self, value: str) -> str:
        """``fp:`` + the first hex digits of HMAC-SHA256(key, value)."""
        digest = hmac.new(
            self._key, _CONTEXT + value.encode("utf-8", "surrogatepass"), hashlib.sha256
        )
        return "fp:" + digest.hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True)
class SecretPolicy:
    """Which fields are secret: the built-in names plus configured ``FIELD`` or
    ``GLOBAL:FIELD`` entries (``FIELD`` may be ``slot N``)."""

    configured: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[str]) -> SecretPolicy:
        """A policy from configuration entries."""
        return cls(frozenset(e.strip() for e in entries))

    def is_secret(self, global_name: str, field: str, *, builtin: bool = False) -> bool:
        """Whether ``field`` of ``global_name`` must be hidden."""
        return (
            builtin
            or field in SECRET_FIELD_NAMES
            or field in self.configured
            or f"{global_name}:{field}" in self.configured
        )


def looks_like_private_key(text: str) -> bool:
    """A PEM private key (``-----BEGIN ... PRIVATE KEY-----``) anywhere in ``text``."""
    return "-----BEGIN" in text and "PRIVATE KEY" in text


def redact_jwks(text: str, key: FingerprintKey) -> str | None:
    """If ``text`` is a JWK or JWK Set with private members, the same JSON with each private
    member replaced by its fingerprint; None if there is nothing to redact."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        document = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    found = False

    def clean(jwk: Any) -> Any:
        nonlocal found
        if not isinstance(jwk, dict):
            return jwk
        result = {}
        for name, member in jwk.items():
            if name in JWK_PRIVATE_MEMBERS:
                found = True
                result[name] = key.fingerprint(json.dumps(member, sort_keys=True))
            else:
                result[name] = member
        return result

    if isinstance(document.get("keys"), list):
        document = {**document, "keys": [clean(k) for k in document["keys"]]}
    else:
        document = clean(document)
    return json.dumps(document, ensure_ascii=False, sort_keys=True) if found else None

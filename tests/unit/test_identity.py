"""Private key hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorsync.errors import AuthenticationError
from mirrorsync.ssh.transport import load_identity


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    """Like OpenSSH, a private key other users can read is refused, with the fix to run."""
    key = tmp_path / "id_ed25519"
    key.write_text("not even parsed")
    key.chmod(0o644)
    with pytest.raises(AuthenticationError, match=r"mode 0644\); run: chmod 600"):
        load_identity(key)

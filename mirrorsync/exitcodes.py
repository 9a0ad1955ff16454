"""The exit-code contract, documented in one place (README "Exit codes")."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes. Cron and systemd wrappers rely on these; never renumber."""

    OK = 0
    """Every member is in sync (after ``sync``: synced and verified by read-back)."""
    ERROR = 1
    """At least one member could not be verified, or the run was refused (e.g. two primaries)."""
    DRIFT = 2
    """``drift`` found differences (``sync --dry-run`` would change something)."""
    PARTIAL = 3
    """Some members were unreachable; every reachable member was handled."""
    STALE = 4
    """``status``: a mirror's last successful run is older than ``monitoring.stale_after``."""
    USAGE = 64
    """Command-line usage error (EX_USAGE)."""
    TEMPFAIL = 75
    """Another run holds the lock (EX_TEMPFAIL): try again later, not an alert."""
    CONFIG = 78
    """The configuration file is invalid (EX_CONFIG)."""
    INTERRUPTED = 130
    """Interrupted by Ctrl-C."""

"""systemd's notify protocol (sd_notify): one datagram per message to ``$NOTIFY_SOCKET``.

The protocol is a single ``sendto`` of ``KEY=VALUE`` lines on an AF_UNIX datagram socket (an
abstract one when the address starts with ``@``). The PyPI options are a C binding needing
libsystemd headers (systemd-python, cysystemd) or an unmaintained pure-Python copy of these
lines (sdnotify, last release 2017, which swallows every error), so it is done here in a few
lines. Without ``NOTIFY_SOCKET`` (not under systemd, or a Type= other than notify) every call
is a no-op. A failed send is logged and never stops the daemon.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import structlog

log = structlog.get_logger("mirrorsync.notify")


class Notifier:
    """Sends notify messages to the socket named by ``NOTIFY_SOCKET`` (read once)."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        self.address = address
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one message (``READY=1``, ``STATUS=...``); True if sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._socket.set_inheritable(False)
                self._socket.sendto(message, target)
            except OSError as exc:
                log.warning("notify.failed", error=str(exc), message=fields[0][:40])
                return False
        return True

    def ready(self, status: str) -> None:
        """Startup (or a reload) is complete."""
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """A free-form status line (`systemctl status` shows it)."""
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        """A reload begins; `ready` ends it. MONOTONIC_USEC as systemd >= 253 expects."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")

    def stopping(self, status: str = "stopping") -> None:
        """Shutdown begins."""
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        """Keep-alive ping for WatchdogSec=."""
        self.send("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set (``WATCHDOG_USEC``) for this process, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        return None
    return seconds / 2 if seconds > 0 else None

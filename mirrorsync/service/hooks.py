"""Hooks on start, success, drift and failure: commands and/or HTTP pings (Healthchecks-style).

* Off the main path: `HookRunner.fire` only queues; one worker thread runs the hooks in order
  (so a ``start`` ping reaches the server before the ``success`` ping of the same run). A run
  never waits for a hook; a full queue drops the new hook with a warning.
* Bounded: each hook gets ``timeout`` seconds; a command is killed with its process group.
* No secrets: commands run with a minimal environment (PATH, LANG and MIRRORSYNC_EVENT,
  MIRRORSYNC_MIRROR, MIRRORSYNC_OUTCOME, MIRRORSYNC_EXIT_CODE), never the daemon's own
  environment, which may hold the IRIS password (``password_env``). HTTP bodies carry the
  outcome summary only. URLs (whose path is often a token, as with Healthchecks) are logged as
  scheme and host only.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mirrorsync import __version__
from mirrorsync.config.service import HookSettings, HookSpec

log = structlog.get_logger("mirrorsync.hooks")
MAX_QUEUED = 100
MAX_BODY = 10_000
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class HookCall:
    """One queued hook invocation."""

    event: str
    mirror: str
    spec: HookSpec
    timeout: float
    outcome: str = ""
    exit_code: int | None = None
    summary: str = ""


def redact_url(url: str) -> str:
    """``https://hc-ping.com/...``: the path and query may be a secret token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


def hook_environment(call: HookCall) -> dict[str, str]:
    """The whole environment a hook command gets."""
    return {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": "C.UTF-8",
        "MIRRORSYNC_EVENT": call.event,
        "MIRRORSYNC_MIRROR": call.mirror,
        "MIRRORSYNC_OUTCOME": call.outcome,
        "MIRRORSYNC_EXIT_CODE": "" if call.exit_code is None else str(call.exit_code),
    }


def run_command(call: HookCall) -> None:
    """Run a command hook; RuntimeError on failure or timeout (with the output's last line)."""
    assert call.spec.command is not None
    process = subprocess.Popen(
        list(call.spec.command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=hook_environment(call),
        cwd="/",
        start_new_session=True,  # its own process group: a timeout kills the whole group
    )
    try:
        output, _ = process.communicate(timeout=call.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"timed out after {call.timeout:g}s") from None
    if process.returncode != 0:
        lines = output.decode("utf-8", "replace").strip().splitlines()
        tail = f": {lines[-1][:200]}" if lines else ""
        raise RuntimeError(f"exit status {process.returncode}{tail}")


def ping_url(call: HookCall) -> None:
    """Ping an HTTP(S) URL (POST with the summary as text, or GET); RuntimeError on failure."""
    assert call.spec.url is not None
    body = call.summary.encode("utf-8")[:MAX_BODY] if call.spec.method == "POST" else None
    request = urllib.request.Request(  # noqa: S310 - the schema allows http(s) only
        call.spec.url,
        data=body,
        method=call.spec.method,
        headers={
            "User-Agent": f"mirrorsync/{__version__}",
            "Content-Type": "text/plain; charset=utf-8",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=call.timeout) as response:  # noqa: S310
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"{type(exc).__name__}: {reason}") from None


def _describe(spec: HookSpec) -> str:
    if spec.command is not None:
        return spec.command[0]
    return redact_url(spec.url or "")


class HookRunner:
    """Queues hook calls and runs them on one background thread, in order."""

    def __init__(
        self,
        settings: HookSettings,
        *,
        on_failure: Callable[[str], None] | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self._queue: queue.Queue[HookCall | None] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def fire(
        self,
        event: str,
        mirror: str,
        *,
        outcome: str = "",
        exit_code: int | None = None,
        summary: str = "",
    ) -> None:
        """Queue the hooks of ``event``; never blocks, never raises."""
        settings = self.settings
        for spec in settings.for_event(event):
            call = HookCall(event, mirror, spec, settings.timeout, outcome, exit_code, summary)
            self._ensure_worker()
            try:
                self._queue.put_nowait(call)
            except queue.Full:
                log.warning("hook.dropped", hook_event=event, mirror=mirror, hook=_describe(spec))
                self._failed(event)

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for queued hooks, then stop (leftovers are dropped)."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, timeout))
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("hook.unfinished_at_exit", waited=timeout)

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="hooks", daemon=True)
                self._thread.start()

    def _failed(self, event: str) -> None:
        if self.on_failure is not None:
            self.on_failure(event)

    def _work(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            # Nothing may end this thread (not even a failing log stream): hooks would stop.
            with contextlib.suppress(Exception):
                self._run(call)

    def _run(self, call: HookCall) -> None:
        started = time.monotonic()
        try:
            (run_command if call.spec.command is not None else ping_url)(call)
        except Exception as exc:
            self._failed(call.event)
            log.warning(
                "hook.failed",
                hook_event=call.event,
                mirror=call.mirror,
                hook=_describe(call.spec),
                error=str(exc),
            )
            return
        log.info(
            "hook.done",
            hook_event=call.event,
            mirror=call.mirror,
            hook=_describe(call.spec),
            seconds=round(time.monotonic() - started, 3),
        )


def event_for(outcome: str) -> str:
    """The hook event a finished run fires: success, drift or failure."""
    if outcome in ("IN_SYNC", "SYNCED"):
        return "success"
    if outcome == "DRIFT":
        return "drift"
    return "failure"

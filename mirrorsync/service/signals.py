"""Signals that are acted on at once, whichever thread the kernel delivers them to.

A Python signal handler runs only when the main thread executes bytecode. The daemon's main
thread sleeps in the scheduler's wait (up to the next run, possibly an hour) and a one-shot
run's main thread waits on worker threads, so a SIGTERM delivered to another thread would sit
unhandled. ``signal.set_wakeup_fd`` makes the C-level handler write the signal number to a
pipe from any thread; a dedicated thread reads it and calls the callback right away.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping

import structlog

log = structlog.get_logger("mirrorsync.signals")


@contextlib.contextmanager
def routed_signals(callbacks: Mapping[int, Callable[[int], None]]) -> Iterator[None]:
    """While inside, each signal in ``callbacks`` calls its callback on a helper thread.

    Must be entered on the main thread; anywhere else it does nothing (no signals routed).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(write_fd, False)  # set_wakeup_fd requires a non-blocking write end
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _ignore) for signum in callbacks}

    def dispatch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                callback = callbacks.get(signum)
                if callback is not None:
                    try:
                        callback(signum)
                    except Exception:
                        log.exception("signal.callback_failed", signal=signum)

    thread = threading.Thread(target=dispatch, name="signals", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_fd)  # the dispatcher reads EOF and ends
        thread.join(2)
        os.close(read_fd)


def _ignore(_signum: int, _frame: object) -> None:
    """The Python-level handler: the work happens in the dispatcher thread."""

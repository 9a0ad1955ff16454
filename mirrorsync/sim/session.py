"""The ``iris session`` terminal: banner, login, prompts, line-by-line execution (checklist 1-4)."""

from __future__ import annotations

import getpass
import traceback
from collections.abc import Iterator
from typing import BinaryIO

from mirrorsync.sim.errors import MError, Unsupported
from mirrorsync.sim.host import SimHost, check_password
from mirrorsync.sim.interpreter import (
    HaltSession,
    Interpreter,
    Output,
    QuitLoop,
    SessionState,
)


class Terminal:
    """Binary stdin/stdout/stderr of the simulated ``iris`` process."""

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO) -> None:
        """Wrap the three streams."""
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr

    def write(self, text: str) -> None:
        """Write terminal output as UTF-8 (the Unicode terminal's output translation)."""
        self._stdout.write(text.encode("utf-8", "surrogatepass"))

    def flush(self) -> None:
        """Flush stdout (every prompt is flushed, so a driver can read interactively)."""
        self._stdout.flush()

    def warn(self, message: str) -> None:
        """A developer note on stderr."""
        self._stderr.write(f"mirrorsync.sim: {message}\n".encode())
        self._stderr.flush()

    def lines(self) -> Iterator[str]:
        """Lines of stdin without their terminators (never echoed)."""
        while True:
            raw = self._stdin.readline()
            if not raw:
                return
            yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _display_error(out: Output, line: str, error: MError) -> None:
    """Show an uncaught error like the IRIS terminal: source line, caret, error (checklist 3)."""
    if out.x:
        out.newline()
    # ASSUMPTION (facts §4.4): the caret sits at column 0, the line is shown as typed.
    out.write(line.strip() + "\n^\n" + error.display())


def _login(
    host: SimHost, terminal: Terminal, lines: Iterator[str]
) -> tuple[str, tuple[str, ...], str] | None:
    """Prompt for Username/Password (no echo); return (user, roles, namespace) or None."""
    settings = host.settings
    terminal.write("\nUsername: ")
    terminal.flush()
    username = next(lines, None)
    terminal.write("\n")
    if username is None:
        return None
    terminal.write("Password: ")
    terminal.flush()
    password = next(lines, None)
    terminal.write("\n")
    if password is None:
        return None
    user = settings.users.get(username)
    if user is None or not check_password(password, user.password_hash):
        return None
    return username, user.roles, user.namespace


def _resolve_namespace(host: SimHost, wanted: str) -> str | None:
    """The configured spelling of a namespace, or None."""
    for known in host.settings.namespaces:
        if known.upper() == wanted.upper():
            return known
    return None


def run_session(  # noqa: PLR0911, PLR0915 - one linear story, kept together on purpose
    host: SimHost,
    instance: str,
    namespace: str | None,
    routine: str | None,
    terminal: Terminal,
) -> int:
    """Run one ``iris session`` process; return its exit status."""
    settings = host.settings
    if instance.upper() != settings.instance.upper():
        # ASSUMPTION (facts §4.1, text UNKNOWN): the message for an unknown instance.
        terminal.write(f"Instance '{instance.upper()}' does not exist\n")
        terminal.flush()
        return 1
    if not settings.running:
        # ASSUMPTION (facts §4.5 only covers qlist): a down instance refuses sessions.
        terminal.write(f"Instance '{settings.instance.upper()}' is not running\n")
        terminal.flush()
        return 1
    terminal.write(f"Node: {settings.node}, Instance: {settings.instance.upper()}\n")
    lines = terminal.lines()
    username = getpass.getuser()
    roles = settings.os_user_roles
    user_namespace = ""
    if not settings.os_auth:
        login = _login(host, terminal, lines)
        if login is None:
            # INFERRED (facts §4.3): "Access Denied", then the process exits non-zero.
            terminal.write("Access Denied\n")
            terminal.flush()
            return 1
        username, roles, user_namespace = login
    wanted = user_namespace or namespace or settings.namespace_default
    resolved = _resolve_namespace(host, wanted)
    if resolved is None:
        # ASSUMPTION: an unknown -U namespace ends the session with an error line.
        terminal.write(f"<NAMESPACE> *{wanted}\n")
        terminal.flush()
        return 1
    state = SessionState(namespace=resolved, roles=tuple(roles), username=username)
    out = Output(terminal.write)
    interp = Interpreter(host, state, out, terminal.warn)

    def execute(line: str) -> int | None:
        """Run one line under the host lock; return an exit status when the session ends."""
        with host.locked():
            host.refresh()
            state.dirty = False
            try:
                interp.run_line(line)
            except QuitLoop:
                pass
            except HaltSession as halt:
                if state.tlevel:
                    interp.rollback()
                _persist(host, state)
                return halt.code
            except MError as error:
                if isinstance(error, Unsupported):
                    terminal.warn(f"unsupported: {error.what}")
                if error.exception.class_name == "%Exception.SystemException":
                    state.zerror = error.exception.ze()
                _display_error(out, line, error)
            except Exception as exc:  # a simulator bug must not kill the session
                # Shown as <SYNTAX> (the construct is effectively unsupported) and reported loudly.
                terminal.warn(f"internal error: {exc!r}\n{traceback.format_exc()}")
                _display_error(out, line, MError("SYNTAX"))
            _persist(host, state)
        return None

    if routine is not None:
        # Application mode (facts §4.1): run the routine argument, errors print and halt.
        # ASSUMPTION: the banner is printed as in direct mode, but no prompt is.
        code = execute(_routine_line(routine))
        terminal.flush()
        return code if code is not None else _end_session(host, interp, state)
    # After a login the first prompt follows "Password: " directly (facts §4.3 transcript).
    for line in _prompted(lines, terminal, out, state, settings.os_auth):
        # INFERRED (facts §4.2 transcript: a blank line after "USER>" before "%SYS>"): the
        # terminator of the typed line is echoed although the command itself is not.
        out.write("\n")
        out.x = 0
        code = execute(line)
        if code is not None:
            terminal.flush()
            return code
    return _end_session(host, interp, state)


def _prompted(
    lines: Iterator[str],
    terminal: Terminal,
    out: Output,
    state: SessionState,
    newline_first: bool,
) -> Iterator[str]:
    """Print the prompt (``\\nUSER>``, ``TL1:`` while a transaction is open) before each line."""
    newline = "\n" if newline_first else ""
    while True:
        # ASSUMPTION (facts §4.2/§4.4): the prompt is "NS>" without a trailing space, preceded by
        # a newline; "TL1:" is prepended while a transaction is open.
        prefix = f"TL{state.tlevel}:" if state.tlevel else ""
        out.write(f"{newline}{prefix}{state.namespace}>")
        newline = "\n"
        terminal.flush()
        line = next(lines, None)
        if line is None:
            return
        yield line


def _routine_line(routine: str) -> str:
    """Turn the routine argument into a command line."""
    text = routine.strip()
    if text.startswith("##") or text.startswith("$"):
        return " do " + text
    return " do " + (text if "^" in text else "^" + text)


def _persist(host: SimHost, state: SessionState) -> None:
    """Save the store when the line changed globals (called with the lock held)."""
    if state.dirty:
        host.save()
        state.dirty = False


def _end_session(host: SimHost, interp: Interpreter, state: SessionState) -> int:
    """EOF: roll back an open transaction, exit 0 (INFERRED, checklist 1)."""
    if state.tlevel:
        with host.locked():
            host.refresh()
            interp.rollback()
            _persist(host, state)
    return 0

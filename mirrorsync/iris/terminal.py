"""Run one framed script through ``iris session`` on a member and return its payload."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from mirrorsync.config.model import Config, MemberConfig
from mirrorsync.errors import IrisLoginError
from mirrorsync.iris import scripts
from mirrorsync.iris.frames import parse_frame

log = structlog.get_logger("mirrorsync.iris")


class CommandOutput(Protocol):
    """What a runner returns (``mirrorsync.ssh.CommandResult`` satisfies it)."""

    @property
    def exit_status(self) -> int: ...
    @property
    def stdout(self) -> bytes: ...
    @property
    def stderr(self) -> bytes: ...


class CommandRunner(Protocol):
    """Runs a command on the member with stdin and a hard deadline."""

    def run(self, argv: Sequence[str], *, stdin: bytes = b"", timeout: float) -> CommandOutput: ...


@dataclass
class IrisTerminal:
    """``iris session INSTANCE -U NAMESPACE`` on one member.

    ``credentials`` is called for each session so the password is read as late as possible and
    lives only in the stdin bytes of that one call. They are sent only to a terminal that asks
    for a login: typed at a ``%SYS>`` prompt they would run as ObjectScript.
    """

    runner: CommandRunner
    member: str
    iris_command: str
    instance: str
    namespace: str
    timeout: float
    credentials: Callable[[], tuple[str, str]] | None = None
    sudo_user: str | None = None
    """Run the session as this OS user through ``sudo -n -u`` (issue 6)."""
    _asks_login: bool | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _argv(self) -> tuple[str, ...]:
        return scripts.session_argv(
            self.iris_command, self.instance, self.namespace, sudo_user=self.sudo_user
        )

    def asks_login(self) -> bool:
        """Whether this member's ``iris session`` prompts ``Username:`` (OS authentication off).

        Found once per member with a session given no input at all: it ends at the first read,
        so nothing is typed anywhere and no login attempt is made (facts §4.3).
        """
        with self._lock:
            if self._asks_login is None:
                result = self.runner.run(self._argv(), stdin=b"", timeout=self.timeout)
                output = result.stdout.decode("utf-8", errors="replace")
                self._asks_login = "Username:" in output
                log.info("iris.login_mode", member=self.member, asks_login=self._asks_login)
            return self._asks_login

    def execute(self, build: Callable[[str], str], *, what: str) -> list[str]:
        """Build a one-line script with a fresh token, run it, return its frame payload."""
        token = scripts.new_token()
        line = build(token)
        login = None
        if self.asks_login():
            if self.credentials is None:
                raise IrisLoginError(
                    f"{self.member}: IRIS asks for a login (OS authentication is off for "
                    "`iris session`) but iris.credentials is not configured"
                )
            login = self.credentials()
        result = self.runner.run(
            self._argv(), stdin=scripts.session_input([line], login), timeout=self.timeout
        )
        output = result.stdout.decode("utf-8", errors="replace")
        if result.exit_status != 0 and not output.strip():
            # Nothing from IRIS at all: say what the shell said (e.g. "iris: not found").
            error = result.stderr.decode("utf-8", errors="replace").strip()[-300:]
            output = f"exit status {result.exit_status}: {error or '(no output)'}"
        return parse_frame(output, token, what=f"{self.member}: {what}")


def terminal_for(config: Config, member: MemberConfig, runner: CommandRunner) -> IrisTerminal:
    """The terminal of ``member`` as the configuration describes it (namespace, deadline,
    login, sudo); the password is read per session, never kept."""
    credentials = config.iris.credentials
    return IrisTerminal(
        runner=runner,
        member=member.name,
        iris_command=member.iris_command,
        instance=member.instance,
        namespace=config.iris.namespace,
        timeout=config.ssh.command_timeout,
        credentials=credentials.resolve if credentials is not None else None,
        sudo_user=member.sudo_user,  # `sudo -n -u OWNER -- iris session ...`
    )

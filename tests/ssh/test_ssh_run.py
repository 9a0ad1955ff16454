"""Remote commands: quoting, stdin, large output on both streams, deadlines, secrets."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from mirrorsync.errors import RemoteTimeoutError, TransportError
from mirrorsync.lab.testing import SshdServer
from mirrorsync.ssh import command_line

SECRET = "s3cret-Pa55word-never-logged"


def test_command_line_quotes_every_argument() -> None:
    """Each argv element becomes exactly one shell word, whatever it contains."""
    assert "iris session IRIS -U %SYS" == command_line(["iris", "session", "IRIS", "-U", "%SYS"])
    assert "echo 'a b' ''\"'\"'x'\"'\"'' '$(id)'" == command_line(["echo", "a b", "'x'", "$(id)"])


def test_command_line_refuses_empty_argv() -> None:
    """An empty argv is a programming error, not an empty remote command."""
    with pytest.raises(ValueError, match="argv"):
        command_line([])


def test_arguments_arrive_literally(sshd: SshdServer) -> None:
    """Spaces, quotes, ';', '$(...)', backticks and globs reach the command untouched."""
    tricky = ["a b", "it's", 'say "hi"', "x; echo INJECTED", "$(echo INJECTED)", "`id`", "*", "\\"]
    with sshd.connection() as connection:
        result = connection.run(["printf", "%s\\n", *tricky], timeout=10)
    assert 0 == result.exit_status
    assert tricky == result.stdout.decode().split("\n")[:-1]


def test_exit_status_and_stderr_are_returned(sshd: SshdServer) -> None:
    """A failing command returns its exit status and stderr instead of raising."""
    with sshd.connection() as connection:
        result = connection.run(["sh", "-c", "echo oops >&2; exit 7"], timeout=10)
    assert (7, b"", b"oops\n") == (result.exit_status, result.stdout, result.stderr)
    assert "oops" == result.stderr_tail()


def test_large_output_on_both_streams_completes(sshd: SshdServer) -> None:
    """Several MiB on stderr first, then stdout, cannot deadlock: both streams are drained."""
    script = (
        "head -c 3000000 /dev/zero >&2; head -c 2500000 /dev/zero; head -c 1500000 /dev/zero >&2"
    )
    with sshd.connection() as connection:
        result = connection.run(["sh", "-c", script], timeout=30)
    assert (0, 2_500_000, 4_500_000) == (
        result.exit_status,
        len(result.stdout),
        len(result.stderr),
    )


def test_large_stdin_is_echoed_back(sshd: SshdServer) -> None:
    """A command echoing 4 MiB of stdin completes: stdin is written while output is read."""
    payload = bytes(range(256)) * (4 * 4096)
    with sshd.connection() as connection:
        result = connection.run(["cat"], stdin=payload, timeout=30)
    assert payload == result.stdout


def test_stdin_is_closed_after_writing(sshd: SshdServer) -> None:
    """The remote command sees end of input after stdin, so `wc -c` returns."""
    with sshd.connection() as connection:
        result = connection.run(["wc", "-c"], stdin=b"12345", timeout=10)
    assert b"5" == result.stdout.strip()


def test_command_past_its_deadline_times_out_quickly(sshd: SshdServer) -> None:
    """A command that outlives its deadline raises RemoteTimeoutError soon after the deadline."""
    with sshd.connection() as connection:
        connection.connect()
        started = time.monotonic()
        with pytest.raises(RemoteTimeoutError) as caught:
            connection.run(["sleep", "30"], timeout=0.5)
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 2.0
        assert "iris-test" in str(caught.value)
        assert "timed out after" in str(caught.value)
        assert caught.value.transient is True
        # The connection itself is still good for the next command.
        assert b"still here\n" == connection.run(["echo", "still here"], timeout=10).stdout


def test_deadline_covers_a_command_that_never_reads_stdin(sshd: SshdServer) -> None:
    """Megabytes of stdin to a command that never reads it still end at the deadline."""
    with sshd.connection() as connection, pytest.raises(RemoteTimeoutError):
        connection.run(["sleep", "30"], stdin=b"x" * 8_000_000, timeout=1)


def test_stdin_secret_is_never_logged(sshd: SshdServer) -> None:
    """The stdin payload (which may hold a password) is absent from logs and errors."""
    script = f"set password={SECRET}\nhalt\n".encode()
    with capture_logs() as logs, sshd.connection() as connection:
        connection.run(["cat"], stdin=script, timeout=10)
        with pytest.raises(RemoteTimeoutError) as caught:
            connection.run(["sleep", "30"], stdin=script, timeout=0.3)
    assert any(entry["event"] == "ssh.run" for entry in logs)
    assert SECRET not in repr(logs)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.args)


def test_run_log_event_carries_the_facts(sshd: SshdServer) -> None:
    """`ssh.run` records argv, exit status, byte counts and duration for the operator."""
    with capture_logs() as logs, sshd.connection() as connection:
        connection.run(["sh", "-c", "printf abc; printf de >&2; exit 3"], timeout=10)
    (event,) = [entry for entry in logs if entry["event"] == "ssh.run"]
    assert ["sh", "-c", "printf abc; printf de >&2; exit 3"] == event["argv"]
    assert (3, 3, 2) == (event["exit_status"], event["stdout_bytes"], event["stderr_bytes"])
    assert "iris-test" == event["member"]


def test_close_is_idempotent_and_reconnects_lazily(sshd: SshdServer) -> None:
    """close() can be called repeatedly; the next run opens a new connection by itself."""
    connection = sshd.connection()
    connection.close()
    assert b"1\n" == connection.run(["echo", "1"], timeout=10).stdout
    connection.close()
    connection.close()
    assert b"2\n" == connection.run(["echo", "2"], timeout=10).stdout
    connection.close()


def test_connection_lost_mid_command_is_a_transport_error(sshd: SshdServer) -> None:
    """If the connection dies while a command runs, run() raises instead of faking an exit."""
    # The command's parent is sshd's per-connection process: killing it drops the connection.
    with sshd.connection() as connection, pytest.raises(TransportError, match="connection lost"):
        connection.run(["sh", "-c", "kill -9 $PPID; sleep 5"], timeout=10)


def test_command_killed_by_signal_has_no_exit_status(sshd: SshdServer) -> None:
    """A command killed by a signal returns exit status -1 on a still-working connection."""
    with sshd.connection() as connection:
        result = connection.run(["sh", "-c", "kill -9 $$"], timeout=10)
        assert -1 == result.exit_status
        assert 0 == connection.run(["true"], timeout=10).exit_status

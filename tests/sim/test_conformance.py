"""End-to-end conformance of ``python -m mirrorsync.sim`` with the transcripts in the facts file."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorsync.iris import frames, results, scripts
from mirrorsync.sim import seed
from mirrorsync.sim.host import HostSettings, SimHost, UserSpec

from .support import Runner, body, seeded


def _iris(
    home: Path, *args: str, stdin: str = "", env_home: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the simulator exactly as the lab's ``iris`` wrapper does."""
    env = dict(os.environ)
    command = [sys.executable, "-m", "mirrorsync.sim"]
    if env_home:
        env["MIRRORSYNC_SIM_HOME"] = str(home)
    else:
        command += ["--home", str(home)]
    return subprocess.run(
        [*command, "session", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_banner_prompts_and_no_echo(host: SimHost) -> None:
    """Facts §4.2: banner, blank line, a prompt per line, no echo, zn changes the prompt, halt."""
    result = _iris(host.home, "iris", stdin='zn "%SYS"\nwrite "installed",!\nhalt\n')
    expected = "Node: alpha, Instance: IRIS\n\nUSER>\n\n%SYS>\ninstalled\n\n%SYS>\n"
    assert (0, expected) == (result.returncode, result.stdout)


def test_eof_without_halt_exits_zero(host: SimHost) -> None:
    """INFERRED (checklist 1): end of stdin ends the session with status 0."""
    result = _iris(host.home, "IRIS", "-U", "%SYS", stdin="write 1\n", env_home=True)
    assert (0, "Node: alpha, Instance: IRIS\n\n%SYS>\n1\n%SYS>") == (
        result.returncode,
        result.stdout,
    )


def test_unknown_instance_fails(host: SimHost) -> None:
    """An instance name the host does not have prints an error and exits 1."""
    result = _iris(host.home, "OTHER", stdin="halt\n")
    assert (1, True) == (result.returncode, "OTHER" in result.stdout)


def test_terminate_exit_status(host: SimHost) -> None:
    """Facts §4.1 heredoc pattern: Terminate(, 1) makes $? non-zero."""
    stdin = (
        'set sc=$system.Status.Error(5001,"x")\n'
        "if '$Get(sc) do ##class(%SYSTEM.Process).Terminate(, 1)\nhalt\n"
    )
    assert 1 == _iris(host.home, "IRIS", stdin=stdin).returncode


def test_error_keeps_reading_stdin(host: SimHost) -> None:
    """Checklist 3: the error shows source line, caret, <ERR> *detail; later lines still run."""
    result = _iris(host.home, "IRIS", stdin='write A\nwrite "ok"\nhalt\n')
    # Same shape as the [FAQ-PROMPT] transcript: source line right under the prompt line.
    assert (0, "USER>\nwrite A\n^\n<UNDEFINED> *A\nUSER>\nok\nUSER>\n") == (
        result.returncode,
        result.stdout.split("\n", 2)[2],
    )


def test_login_prompts_and_success(tmp_path: Path) -> None:
    """Facts §4.3: Username/Password are the first two stdin lines and are never echoed."""
    users = {"SuperUser": UserSpec.with_password("SYS-pw")}
    home = tmp_path / "h"
    SimHost.create(home, HostSettings(node="master", instance="IRIS1", os_auth=False, users=users))
    result = _iris(home, "iris1", stdin="SuperUser\nSYS-pw\nwrite $username\nhalt\n")
    expected = "Node: master, Instance: IRIS1\n\nUsername: \nPassword: \nUSER>\nSuperUser\nUSER>\n"
    assert (0, expected) == (result.returncode, result.stdout)


def test_login_refused(tmp_path: Path) -> None:
    """Wrong credentials print Access Denied and exit 1; the password is never printed."""
    users = {"SuperUser": UserSpec.with_password("SYS-pw")}
    home = tmp_path / "h"
    SimHost.create(home, HostSettings(node="master", instance="IRIS", os_auth=False, users=users))
    result = _iris(home, "IRIS", stdin="SuperUser\nwrong-pw\nhalt\n")
    assert (1, True, False) == (
        result.returncode,
        result.stdout.endswith("Access Denied\n"),
        "wrong-pw" in result.stdout + result.stderr,
    )


def test_routine_argument_error_prints_and_halts(host: SimHost) -> None:
    """Facts §4.4: in application mode an error is printed and the process halts."""
    result = _iris(
        host.home, "IRIS", "-U", "%SYS", "##class(%SYSTEM.Nope).X()", stdin='write "never"\n'
    )
    assert (0, True, False) == (
        result.returncode,
        "<CLASS DOES NOT EXIST> *%SYSTEM.Nope" in result.stdout,
        "never" in result.stdout,
    )


BRIEF_SCRIPTS = (
    (Path(__file__).parent / "data" / "brief_scripts.txt").read_text("utf-8").splitlines()
)
"""The representative product lines from the simulator brief ("EXPORT" is replaced by a path)."""


def test_brief_scripts_run_end_to_end(host: SimHost, tmp_path: Path) -> None:
    """The representative product lines all end their frames with OK in one real process."""
    seed.write_clients(host, seed.make_clients(5, seeded(11)))
    export_path = str(tmp_path / "export.xml")
    stdin = "\n".join(s.replace("EXPORT", export_path) for s in BRIEF_SCRIPTS) + "\nhalt\n"
    result = _iris(host.home, "IRIS", "-U", "%SYS", stdin=stdin)
    assert (0, 5, 0, "") == (
        result.returncode,
        result.stdout.count("<<MS:abc:END:OK>>"),
        result.stdout.count("<<MS:abc:END:ERR"),
        result.stderr,
    )
    assert [
        "G ^OAuth2.Client.MetaDataD",
        "G ^OAuth2.Server.ClientD",
        "G ^OAuth2.Server.ClientI",
    ] == [line for line in result.stdout.split("\n") if line.startswith("G ")]


def _framed(run: Runner, line: str, token: str) -> list[str]:
    """Run one product script in-process and return its frame payload."""
    return frames.parse_frame(run(line, "halt").stdout, token, what="test")


def test_product_probe_script(run: Runner) -> None:
    """scripts.probe runs cleanly and parses into the primary role."""
    token = scripts.new_token()
    probe = results.parse_probe(_framed(run, scripts.probe(token), token), "test")
    assert "2025.1" in repr(probe)


def test_product_discover_script(run: Runner, host: SimHost) -> None:
    """scripts.discover lists the OAuth2 globals."""
    seed.write_clients(host, seed.make_clients(3, seeded(12)))
    token = scripts.new_token()
    payload = _framed(run, scripts.discover(token, list(seed.SEED_GLOBALS)), token)
    found = results.parse_discovery(payload, "test").oauth_globals
    assert set(seed.SEED_GLOBALS) == set(found)


def test_product_readout_matches_the_store(run: Runner, host: SimHost) -> None:
    """scripts.readout reproduces every node byte for byte (values, unicode, $LIST, "")."""
    seed.write_clients(host, seed.make_clients(8, seeded(13)))
    names = list(seed.SEED_GLOBALS)
    token = scripts.new_token()
    parsed = results.parse_readout(
        _framed(run, scripts.readout(token, names), token), names, "test"
    )
    expected = {
        (name, tuple(str(s) for s in subs)): value
        for name in names
        for subs, value in host.nodes(name)
    }
    assert expected == parsed


def test_product_readout_of_empty_values(run: Runner, host: SimHost) -> None:
    """Index nodes hold "" : the read-out line then ends with an empty Base64 field."""
    seed.write_clients(host, seed.make_clients(2, seeded(14)))
    names = [seed.CLIENT_INDEX]
    token = scripts.new_token()
    output = run(scripts.readout(token, names), "halt").stdout
    lines = [line for line in output.split("\n") if line.startswith("N ")]
    assert 2 == len(lines)
    assert all(line.endswith(" ") for line in lines)


def test_product_export_and_load_scripts(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """scripts.export then scripts.load (with kill_names) restore the exported state."""
    seed.write_clients(host, seed.make_clients(4, seeded(15)))
    names = [seed.CLIENT_DATA, seed.CLIENT_INDEX]
    before = {name: host.nodes(name) for name in names}
    path = str(tmp_path / "x.xml")
    token = scripts.new_token()
    assert [] == _framed(run, scripts.export(token, names, path), token)
    seed.drift_member(
        host,
        seed.make_clients(4, seeded(15)),
        seeded(1),
        missing=1,
        changed_secret=1,
        extra=1,
    )
    host.set("OAuth2.Server.ClientS", ("x",), "stale")
    token = scripts.new_token()
    assert [] == _framed(run, scripts.load(token, path, ["OAuth2.Server.ClientS"]), token)
    assert (before, []) == (
        {name: host.nodes(name) for name in names},
        host.nodes("OAuth2.Server.ClientS"),
    )


def test_product_load_of_missing_file_reports_5012(run: Runner, tmp_path: Path) -> None:
    """A failed Load ends the frame with the IRIS error text."""
    token = scripts.new_token()
    with pytest.raises(Exception, match="ERROR #5012"):
        _framed(run, scripts.load(token, str(tmp_path / "missing.xml")), token)


def test_product_load_rolls_back_a_failed_load(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """A Load that fails halfway (database full) is rolled back: the member keeps its old data."""
    seed.write_clients(host, seed.make_clients(4, seeded(16)))
    names = [seed.CLIENT_DATA, seed.CLIENT_INDEX]
    path = str(tmp_path / "x.xml")
    token = scripts.new_token()
    assert [] == _framed(run, scripts.export(token, names, path), token)
    host.set(seed.CLIENT_DATA, ("only-here",), "old")
    before = {name: host.nodes(name) for name in names}
    host.update_settings(fault_load_after_nodes=2)
    token = scripts.new_token()
    with pytest.raises(Exception, match="FILEFULL"):
        _framed(run, scripts.load(token, path), token)
    assert before == {name: host.nodes(name) for name in names}


def test_non_transactional_load_leaves_partial_state(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """With load_transactional False (an IRIS whose Load ignores TROLLBACK) a failed Load
    leaves the member half written: the case mirrorsync's snapshot restore exists for."""
    seed.write_clients(host, seed.make_clients(4, seeded(17)))
    path = str(tmp_path / "x.xml")
    token = scripts.new_token()
    assert [] == _framed(run, scripts.export(token, [seed.CLIENT_DATA], path), token)
    host.set(seed.CLIENT_DATA, ("only-here",), "old")
    host.update_settings(fault_load_after_nodes=2, load_transactional=False)
    token = scripts.new_token()
    with pytest.raises(Exception, match="FILEFULL"):
        _framed(run, scripts.load(token, path), token)
    assert 2 == len(host.nodes(seed.CLIENT_DATA))


def test_product_kill_globals_script(run: Runner, host: SimHost) -> None:
    """scripts.kill_globals removes whole globals and nothing else."""
    seed.write_clients(host, seed.make_clients(2, seeded(18)))
    host.set("Other", (), "keep")
    token = scripts.new_token()
    assert [] == _framed(
        run, scripts.kill_globals(token, [seed.CLIENT_DATA, seed.CLIENT_INDEX]), token
    )
    assert ([], [], [((), "keep")]) == (
        host.nodes(seed.CLIENT_DATA),
        host.nodes(seed.CLIENT_INDEX),
        host.nodes("Other"),
    )


COVERED_SCRIPTS = {"probe", "discover", "readout", "export", "load", "kill_globals"}
# IRIS 2025.2+ builders (issue 6), covered in test_security_layouts.py for both layouts.
COVERED_SCRIPTS |= {
    "security_discover",
    "security_readout",
    "security_export",
    "security_load",
    "security_kill",
}
# Issue 6 doctor and mapping builders, covered in test_mapping.py.
COVERED_SCRIPTS |= {"global_locations", "whoami", "doctor_scratch"}


def test_every_script_builder_is_covered_here() -> None:
    """Each public scripts.* builder taking a token has a simulator test above (add one if not)."""
    builders = {
        name
        for name, function in inspect.getmembers(scripts, inspect.isfunction)
        if not name.startswith("_")
        and list(inspect.signature(function).parameters)[:1] == ["token"]
    }
    assert COVERED_SCRIPTS == builders


def test_transcript_body_helper(run: Runner) -> None:
    """The body helper strips banner and prompts (sanity check for the other tests)."""
    assert "x" == body(run('write "x"'))


def _control(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``iris qlist``/``iris list`` through the simulator."""
    command = [sys.executable, "-m", "mirrorsync.sim", "--home", str(home), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_qlist_fields_for_a_running_primary_and_a_down_member(host: SimHost) -> None:
    """Checklist 11: 14 fields with mirror type/status; a down instance has fewer fields."""
    fields = _control(host.home, "qlist", "IRIS").stdout.rstrip("\n").split("^")
    assert (14, "IRIS", "running", "ok", "Failover", "Primary") == (
        len(fields),
        fields[0],
        fields[3].split(",")[0],
        fields[8],
        fields[10],
        fields[11],
    )
    host.update_settings(running=False)
    down = _control(host.home, "qlist").stdout.rstrip("\n").split("^")
    assert (8, "down") == (len(down), down[3].split(",")[0])
    assert 1 == _iris(host.home, "IRIS", stdin="halt\n").returncode


def test_list_shows_the_mirroring_line(host: SimHost) -> None:
    """`iris list` prints the mirroring line while running (facts §4.5)."""
    host.update_settings(mirror_status="BACKUP")
    output = _control(host.home, "list").stdout
    assert "\tmirroring: Member Type = Failover; Status = Backup\n" in output

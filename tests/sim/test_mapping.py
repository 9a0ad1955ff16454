"""Issue 6: where OAuth2 globals live (mirrored database or not) and doctor's scratch scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorsync.errors import IrisError, ProtocolError
from mirrorsync.iris import frames, mapping, scripts
from mirrorsync.iris.frames import decode_b64
from mirrorsync.sim import seed
from mirrorsync.sim.classes import MIRRORED_DB_DIRECTORY, MIRRORED_DB_NAME
from mirrorsync.sim.host import SimHost

from .support import Runner, seeded

NAMES = ("OAuth2.Server.ClientD", "OAuth2.Server.ClientI")


def _framed(run: Runner, line: str, token: str, namespace: str = "%SYS") -> list[str]:
    """Run one product script in-process and return its frame payload."""
    return frames.parse_frame(run(line, "halt", namespace=namespace).stdout, token, what="test")


def _locations(run: Runner, namespace: str = "%SYS") -> dict[str, mapping.GlobalLocation]:
    token = scripts.new_token()
    payload = _framed(run, scripts.global_locations(token, NAMES), token, namespace)
    return mapping.parse_locations(payload, NAMES, "test")


def test_global_locations_default_is_irissys_not_mirrored(run: Runner) -> None:
    """Without a mapping every OAuth2 global is in the IRISSYS directory, not mirrored."""
    found = _locations(run)
    assert dict.fromkeys(
        NAMES, ("^/usr/irissys/mgr/", mapping.Mirroring.NOT_MIRRORED, "/usr/irissys/mgr/")
    ) == {name: (loc.destination, loc.mirroring, loc.directory) for name, loc in found.items()}


def test_global_locations_report_a_mirrored_mapping(run: Runner, host: SimHost) -> None:
    """A global the host maps into a mirrored database is reported mirrored, with its DB name."""
    host.update_settings(mirrored_globals=("OAuth2.Server.ClientD",))
    found = _locations(run)
    assert (
        mapping.Mirroring.MIRRORED,
        MIRRORED_DB_DIRECTORY,
        MIRRORED_DB_NAME,
        mapping.Mirroring.NOT_MIRRORED,
    ) == (
        found["OAuth2.Server.ClientD"].mirroring,
        found["OAuth2.Server.ClientD"].directory,
        found["OAuth2.Server.ClientD"].mirror_db_name,
        found["OAuth2.Server.ClientI"].mirroring,
    )


def test_sys_database_outside_sys_fails_like_iris(run: Runner) -> None:
    """SYS.Database exists in %SYS only: elsewhere the script ends with <CLASS DOES NOT EXIST>."""
    token = scripts.new_token()
    with pytest.raises(IrisError, match="CLASS DOES NOT EXIST"):
        _framed(run, scripts.global_locations(token, NAMES), token, namespace="USER")


def test_unknown_namespace_and_unknown_directory(run: Runner) -> None:
    """GetGlobalDest of an unknown namespace is "", %OpenId of a non-database directory is ""."""
    result = run(
        'write "[",##class(%SYS.Namespace).GetGlobalDest("NOPE","^X"),"]",!',
        'write $isobject(##class(SYS.Database).%OpenId("/nowhere/")),!',
        "halt",
    )
    assert ["[]", "0"] == [line for line in result.stdout.split("\n") if line in ("[]", "0", "1")]


def test_other_sys_database_methods_do_not_exist(run: Runner) -> None:
    """Only %OpenId is modelled: another SYS.Database class method fails, never silently."""
    result = run('write ##class(SYS.Database).Nope("/x/")', "halt")
    assert "<METHOD DOES NOT EXIST>" in result.stdout


def test_parse_locations_rejects_garbage() -> None:
    """A line that is not a location line (or a missing global) is a ProtocolError."""
    with pytest.raises(ProtocolError):
        mapping.parse_locations(["L OAuth2.Server.ClientD Xg== ? "], NAMES, "test")
    with pytest.raises(ProtocolError, match="no location"):
        mapping.parse_locations(["L OAuth2.Server.ClientD Xg== 0 "], NAMES, "test")


def _location(name: str, flag: mapping.Mirroring) -> mapping.GlobalLocation:
    return mapping.GlobalLocation(name, "^/db/", flag, "DB" if flag == "mirrored" else "")


def test_exclusions_leave_mirrored_globals_out_and_warn() -> None:
    """A global mirrored on every member is excluded with one warning; the others are kept."""
    answer = {
        "OAuth2.Server.ClientD": _location("OAuth2.Server.ClientD", mapping.Mirroring.MIRRORED),
        "OAuth2.Server.ClientI": _location("OAuth2.Server.ClientI", mapping.Mirroring.NOT_MIRRORED),
    }
    decided = mapping.exclusions(NAMES, {"a": answer, "b": answer})
    assert (("OAuth2.Server.ClientI",), ("OAuth2.Server.ClientD",), 1) == (
        decided.kept,
        decided.excluded,
        len(decided.warnings),
    )
    assert "mirrored database on a, b" in decided.warnings[0]


def test_exclusions_flag_an_inconsistent_mapping_and_an_unasked_member() -> None:
    """Mirrored on one member only: still excluded, and the warning names the odd member; a
    member that could not be asked is named too and excludes nothing."""
    mirrored = {n: _location(n, mapping.Mirroring.MIRRORED) for n in NAMES}
    plain = {n: _location(n, mapping.Mirroring.NOT_MIRRORED) for n in NAMES}
    decided = mapping.exclusions(NAMES, {"a": mirrored, "b": plain, "c": IrisError("c: no frame")})
    assert ((), NAMES) == (decided.kept, decided.excluded)
    assert 3 == len(decided.warnings)
    assert any("on b it is NOT in a mirrored database" in w for w in decided.warnings)
    assert any(w.startswith("c: could not tell") for w in decided.warnings)


def test_whoami_prints_user_and_roles(run: Runner) -> None:
    """scripts.whoami prints the IRIS user and its roles (the OS user has %All here)."""
    token = scripts.new_token()
    fields = dict(line.split(" ", 1) for line in _framed(run, scripts.whoami(token), token))
    assert "%All" == decode_b64(fields["ROLES"])


def _scratch(run: Runner, tmp_path: Path) -> dict[str, str]:
    token = scripts.new_token()
    path = str(tmp_path / "scratch.xml")
    payload = _framed(run, scripts.doctor_scratch(token, path), token)
    return {line.split(" ")[0]: line.split(" ")[1] for line in payload}


def test_doctor_scratch_on_a_faithful_host(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """Load kills, TROLLBACK undoes a Load, binary values survive; OAuth2 and the scratch
    global are untouched / gone afterwards."""
    seed.write_clients(host, seed.make_clients(3, seeded(31)))
    before = {name: host.nodes(name) for name in seed.SEED_GLOBALS}
    fields = _scratch(run, tmp_path)
    assert {"EXPORT": "1", "LOAD": "1", "KILL": "1", "ROUNDTRIP": "1", "TXLOAD": "1",
            "ROLLBACK": "1"} == fields  # fmt: skip
    assert before == {name: host.nodes(name) for name in seed.SEED_GLOBALS}
    assert [] == host.nodes(scripts.SCRATCH_GLOBAL)


@pytest.mark.parametrize(
    ("setting", "key"),
    [({"load_kill": "merge"}, "KILL"), ({"load_transactional": False}, "ROLLBACK")],
)
def test_doctor_scratch_detects_an_unfaithful_load(
    run: Runner, host: SimHost, tmp_path: Path, setting: dict[str, object], key: str
) -> None:
    """A merging Load gives KILL 0; a Load that ignores the transaction gives ROLLBACK 0."""
    host.update_settings(**setting)
    assert "0" == _scratch(run, tmp_path)[key]
    assert [] == host.nodes(scripts.SCRATCH_GLOBAL)


def test_doctor_scratch_kills_its_global_when_it_fails(run: Runner, host: SimHost) -> None:
    """An Export into a directory that does not exist ends EXPORT 0 and leaves no scratch global."""
    token = scripts.new_token()
    payload = _framed(run, scripts.doctor_scratch(token, "/nonexistent/dir/x.xml"), token)
    assert (["EXPORT"], []) == (
        [line.split(" ")[0] for line in payload],
        host.nodes(scripts.SCRATCH_GLOBAL),
    )

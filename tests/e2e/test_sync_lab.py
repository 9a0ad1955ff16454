"""End to end: the real CLI against the lab (real sshd per member, simulated IRIS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorsync.core.snapshots import SnapshotStore
from mirrorsync.lab.lab import LabInfo
from mirrorsync.sim.host import SimHost, UserSpec

CLIENT_D = "OAuth2.Server.ClientD"
ZV_2025_2 = "IRIS for UNIX (Ubuntu Server LTS for x86-64) 2025.2 (Build 227U) Mon Jul 7 2025"
pytestmark = pytest.mark.lab


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point as an operator (or cron) would."""
    return subprocess.run(
        [sys.executable, "-m", "mirrorsync", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def member_home(lab: LabInfo, name: str) -> SimHost:
    return SimHost(Path(next(m.iris_home for m in lab.members if m.name == name)))


def client_records(host: SimHost) -> dict[str, str]:
    """ClientId -> record value, straight from the simulator's store (not through mirrorsync)."""
    return {str(subs[0]): value for subs, value in host.nodes(CLIENT_D) if len(subs) == 1}


def all_nodes(host: SimHost, names: list[str]) -> dict[tuple[str, tuple[Any, ...]], str]:
    return {(name, subs): value for name in names for subs, value in host.nodes(name)}


ITEM_GLOBALS = [
    "OAuth2.Server.ClientD",
    "OAuth2.Server.ClientI",
    "OAuth2.Server.ClientS",
    "OAuth2.Client.MetaDataD",
    "OAuth2.Client.MetaDataI",
    "OAuth2.Client.MetaDataS",
]


def expected_client_drift(lab: LabInfo, member: str) -> dict[str, set[str]]:
    primary = client_records(member_home(lab, "iris-a"))
    other = client_records(member_home(lab, member))
    return {
        "added": set(primary) - set(other),
        "removed": set(other) - set(primary),
        "changed": {k for k in set(primary) & set(other) if primary[k] != other[k]},
    }


def reported_client_drift(document: dict[str, Any], member: str) -> dict[str, set[str]]:
    report = next(m for m in document["members"] if m["name"] == member)
    found: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
    for difference in report["differences"]:
        if difference["global"] == CLIENT_D:
            found[difference["kind"]].add(difference["key"][0])
    return found


def remote_leftovers(lab: LabInfo) -> list[str]:
    return sorted(p.name for p in (lab.directory / "remote-tmp").glob("mirrorsync-*"))


def write_config(lab: LabInfo, name: str, change: dict[str, Any]) -> Path:
    """A variant of the lab's config with top-level keys replaced."""
    config = yaml.safe_load(lab.config.read_text())
    config.update(change)
    path = lab.directory / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_drift_sync_drift_converges(lab: LabInfo) -> None:
    """Drift lists exactly the seeded differences, sync fixes them, and drift then exits 0."""
    backup = expected_client_drift(lab, "iris-b")
    assert (3, 1, 1) == (len(backup["added"]), len(backup["changed"]), len(backup["removed"]))

    drift = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 2 == drift.returncode, drift.stderr
    document = json.loads(drift.stdout)
    assert ("LABMIRROR", "iris-a", "DRIFT") == (
        document["mirror"],
        document["primary"],
        document["outcome"],
    )
    statuses = {m["name"]: (m["role"], m["status"]) for m in document["members"]}
    assert {
        "iris-a": ("primary", "in_sync"),
        "iris-b": ("backup", "drift"),
        "iris-c": ("async", "drift"),
    } == statuses
    assert backup == reported_client_drift(document, "iris-b")
    assert expected_client_drift(lab, "iris-c") == reported_client_drift(document, "iris-c")

    old_backup = {
        (g, tuple(str(x) for x in subs)): v
        for (g, subs), v in all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS).items()
    }
    sync = run_cli("sync", "-c", str(lab.config))
    assert 0 == sync.returncode, sync.stdout + sync.stderr
    assert "SYNCED" == sync.stdout.strip().splitlines()[-1]
    (backup,) = SnapshotStore(lab.directory / "state").all("LABMIRROR", "iris-b")
    assert ("member-backup", old_backup) == (backup.kind, backup.readout())
    (exported,) = SnapshotStore(lab.directory / "state").all("LABMIRROR", "iris-a")
    assert "primary-export" == exported.kind
    primary_nodes = all_nodes(member_home(lab, "iris-a"), ITEM_GLOBALS)
    for name in ("iris-b", "iris-c"):
        assert primary_nodes == all_nodes(member_home(lab, name), ITEM_GLOBALS)

    again = run_cli("drift", "-c", str(lab.config))
    assert 0 == again.returncode, again.stdout + again.stderr
    assert "IN_SYNC" == again.stdout.strip().splitlines()[-1]
    assert [] == remote_leftovers(lab)
    assert [] == list((Path(lab.directory) / "state" / "tmp").glob("*"))


def test_two_primaries_refused(lab: LabInfo) -> None:
    """With two members claiming primary, nothing is written and the run exits 1."""
    member_home(lab, "iris-b").update_settings(mirror_status="PRIMARY")
    snapshot = all_nodes(member_home(lab, "iris-c"), ITEM_GLOBALS)
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    document = json.loads(result.stdout)
    assert "more than one member reports itself primary: iris-a, iris-b" in document["refusal"]
    assert snapshot == all_nodes(member_home(lab, "iris-c"), ITEM_GLOBALS)


def test_no_primary_refused(lab: LabInfo) -> None:
    """With no primary (e.g. mid-failover) the run refuses and exits 1."""
    member_home(lab, "iris-a").update_settings(mirror_status="BACKUP")
    member_home(lab, "iris-b").update_settings(mirror_status="TRANSITION")
    result = run_cli("sync", "-c", str(lab.config))
    assert 1 == result.returncode
    assert "ERROR" == result.stdout.strip().splitlines()[-1]
    assert "in transition" in result.stdout


def test_mixed_version_mirror_refused_per_member(lab: LabInfo) -> None:
    """A 2025.2 primary (^SECURITY layout) is never copied into 2025.1 members (^OAuth2.*)."""
    member_home(lab, "iris-a").update_settings(zv=ZV_2025_2)
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    members = {m["name"]: m for m in json.loads(result.stdout)["members"]}
    assert "error" == members["iris-b"]["status"]
    assert "copying between different layouts is refused" in members["iris-b"]["error"]
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)


def security_nodes(host: SimHost) -> dict[tuple[Any, ...], str]:
    return dict(host.nodes("SECURITY"))


@pytest.mark.parametrize("layout", ["security-flat", "security-nested"])
def test_irissecurity_mirror_converges(lab: LabInfo, layout: str) -> None:
    """IRIS 2025.2+: OAuth2 under ^SECURITY is found, drift reported, synced, and the other
    ^SECURITY subscripts (users) are never touched."""
    import random

    from mirrorsync.sim import seed

    clients = seed.make_clients(8, random.Random(5))
    for index, member in enumerate(lab.members):
        host = member_home(lab, member.name)
        for name in ITEM_GLOBALS:
            host.kill(name)
        host.update_settings(zv=ZV_2025_2)
        seed.write_security_baseline(host)
        host.set("SECURITY", ("UsersD", f"user-of-{member.name}"), member.name)
        seed.write_clients(host, clients, layout)
        if index:
            seed.drift_member(
                host,
                clients,
                random.Random(index),
                missing=2,
                extra=1,
                layout=layout,
            )
    users_before = {
        m.name: {
            k: v for k, v in security_nodes(member_home(lab, m.name)).items() if k[0] == "UsersD"
        }
        for m in lab.members
    }
    drift = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 2 == drift.returncode, drift.stdout + drift.stderr
    sync = run_cli("sync", "-c", str(lab.config))
    assert 0 == sync.returncode, sync.stdout + sync.stderr
    assert 0 == run_cli("drift", "-c", str(lab.config)).returncode

    def oauth(host: SimHost) -> dict[tuple[Any, ...], str]:
        return {k: v for k, v in security_nodes(host).items() if str(k[0]).startswith("OAuth2")}

    primary = oauth(member_home(lab, "iris-a"))
    assert primary
    for member in lab.members:
        host = member_home(lab, member.name)
        assert primary == oauth(host)
        users = {k: v for k, v in security_nodes(host).items() if k[0] == "UsersD"}
        assert users_before[member.name] == users


def test_missing_all_role_is_named(lab: LabInfo) -> None:
    """On 2025.2+ without %All the member is reported with what to grant, nothing written."""
    from mirrorsync.sim import seed

    for member in lab.members:
        host = member_home(lab, member.name)
        host.update_settings(zv=ZV_2025_2)
        seed.write_security_baseline(host)
    member_home(lab, "iris-c").update_settings(os_user_roles=())
    result = run_cli("drift", "-c", str(lab.config), "--format", "json")
    member = next(m for m in json.loads(result.stdout)["members"] if m["name"] == "iris-c")
    assert "error" == member["status"]
    assert "%All" in member["error"]


def test_member_down_is_partial(lab: LabInfo) -> None:
    """A member whose sshd is down is unreachable; the others are synced; exit 3."""
    from mirrorsync.lab.sshd import stop_sshd

    down = next(m for m in lab.members if m.name == "iris-c")
    stop_sshd(down.sshd_pid, Path(down.sshd_config))
    path = write_config(
        lab, "fast-retry.yaml", {"retry": {"attempts": 2, "initial_wait": 0.1, "max_wait": 0.2}}
    )
    result = run_cli("sync", "-c", str(path), "--format", "json")
    assert 3 == result.returncode, result.stdout + result.stderr
    document = json.loads(result.stdout)
    statuses = {m["name"]: m["status"] for m in document["members"]}
    assert {"iris-a": "in_sync", "iris-b": "synced", "iris-c": "unreachable"} == statuses
    assert "PARTIAL" == document["outcome"]


def test_unknown_host_key_refused(lab: LabInfo) -> None:
    """A member whose host key is not pinned is refused (not treated as unreachable)."""
    known = lab.known_hosts.read_text().splitlines()
    lab.known_hosts.write_text("\n".join(line for line in known if "127.0.0.12" not in line) + "\n")
    result = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    document = json.loads(result.stdout)
    member = next(m for m in document["members"] if m["name"] == "iris-b")
    assert "error" == member["status"]
    assert "SHA256:" in member["error"]


def test_login_with_credentials_keeps_secret_out_of_output(lab: LabInfo) -> None:
    """With OS auth off, the password answers the prompt from an env var and appears nowhere."""
    secret = "pw-Very-Secret-4711"
    user = UserSpec.with_password(secret, roles=("%All",))
    for member in lab.members:
        member_home(lab, member.name).update_settings(os_auth=False, users={"mirrorsync": user})
    credentials = {"username": "mirrorsync", "password_env": "MS_TEST_PW"}
    path = write_config(lab, "with-login.yaml", {"iris": {"credentials": credentials}})

    wrong = run_cli("drift", "-c", str(path), "--format", "json", env={"MS_TEST_PW": "nope"})
    assert 1 == wrong.returncode
    assert "refused the login" in wrong.stdout

    result = run_cli("sync", "-c", str(path), env={"MS_TEST_PW": secret})
    assert 0 == result.returncode, result.stdout + result.stderr
    for text in (result.stdout, result.stderr, wrong.stdout, wrong.stderr):
        assert secret not in text
    for log_file in Path(lab.directory).rglob("*.log"):
        assert secret not in log_file.read_text(errors="replace")


def test_hanging_iris_times_out(lab: LabInfo) -> None:
    """A member whose `iris session` never answers is cut off at the deadline and reported."""
    slow = lab.directory / "slow-iris"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    config = yaml.safe_load(lab.config.read_text())
    config["ssh"]["command_timeout"] = 1.5
    config["retry"] = {"attempts": 2, "initial_wait": 0.1, "max_wait": 0.1}
    config["mirrors"][0]["members"][2]["iris_command"] = str(slow)
    path = lab.directory / "slow.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("drift", "-c", str(path), "--format", "json")
    assert 3 == result.returncode, result.stdout + result.stderr
    member = next(m for m in json.loads(result.stdout)["members"] if m["name"] == "iris-c")
    assert "unreachable" == member["status"]
    assert member["error"].startswith("timed out")
    retries = [json.loads(line) for line in result.stderr.splitlines() if "member.retry" in line]
    assert [("iris-c", "probe", 1)] == [(r["member"], r["step"], r["attempt"]) for r in retries]


def test_case_variant_global_is_named(lab: LabInfo) -> None:
    """A configured global missing on the primary is warned about, naming its case variant."""
    primary = member_home(lab, "iris-a")
    for subscripts, value in primary.nodes("OAuth2.Client.MetaDataD"):
        primary.set("OAuth2.Client.MetadataD", subscripts, value)
    primary.kill("OAuth2.Client.MetaDataD")
    result = run_cli("drift", "-c", str(lab.config), "--format", "json")
    warnings = json.loads(result.stdout)["warnings"]
    assert [
        "^OAuth2.Client.MetaDataD does not exist on the primary iris-a "
        "(found ^OAuth2.Client.MetadataD: global names are case-sensitive)"
    ] == warnings


def test_config_from_environment_variable(lab: LabInfo) -> None:
    """Without -c, $MIRRORSYNC_CONFIG names the config file."""
    result = run_cli("drift", env={"MIRRORSYNC_CONFIG": str(lab.config)})
    assert 2 == result.returncode, result.stderr
    assert "DRIFT" == result.stdout.strip().splitlines()[-1]


def test_primary_without_item_globals_is_not_copied(lab: LabInfo) -> None:
    """An empty primary never empties the members: the sync is refused."""
    primary = member_home(lab, "iris-a")
    for name in ITEM_GLOBALS:
        primary.kill(name)
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    result = run_cli("sync", "-c", str(lab.config))
    assert 1 == result.returncode
    assert "refusing to empty the other members" in result.stdout
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)


def test_stop_request_abandons_at_a_safe_boundary(lab: LabInfo) -> None:
    """A stop request (deadline, SIGTERM) ends the run before the next step, touching nothing."""
    from mirrorsync.cli_options import connector
    from mirrorsync.config import load_config
    from mirrorsync.core.engine import MirrorRun

    config = load_config(lab.config)
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    asked: list[str] = []

    def stop() -> str | None:
        asked.append("checked")
        return "deadline of 0s passed" if len(asked) > 1 else None

    report = MirrorRun(config, config.mirrors[0], connector(config), stop=stop).sync()
    assert "ERROR" == report.outcome.value
    assert report.refusal is not None
    assert "stopped before the export" in report.refusal
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    assert "not handled: run abandoned" == report.member("iris-b").error


def test_successful_sync_records_baseline(lab: LabInfo) -> None:
    """After a fully successful sync the primary's read-out and name are kept as the baseline."""
    from mirrorsync.core.backup import load_baseline

    assert None is load_baseline(lab.directory / "state", "LABMIRROR")
    assert 0 == run_cli("sync", "-c", str(lab.config)).returncode
    baseline = load_baseline(lab.directory / "state", "LABMIRROR")
    assert baseline is not None
    primary, nodes = baseline
    assert "iris-a" == primary
    expected = {
        (g, tuple(str(x) for x in subs)): v
        for (g, subs), v in all_nodes(member_home(lab, "iris-a"), ITEM_GLOBALS).items()
    }
    assert expected == nodes


def test_primary_of_another_mirror_is_refused(lab: LabInfo) -> None:
    """A primary that names another mirror (a wrong address in the config) is never copied."""
    member_home(lab, "iris-a").update_settings(mirror_name="TESTMIRROR")
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    assert "belongs to mirror 'TESTMIRROR', not 'LABMIRROR'" in json.loads(result.stdout)["refusal"]
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)


def test_failover_member_of_another_mirror_is_not_touched(lab: LabInfo) -> None:
    """A failover member naming another mirror is reported and left alone; the rest sync."""
    member_home(lab, "iris-b").update_settings(mirror_name="PRODMIRROR")
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    members = {m["name"]: m for m in json.loads(result.stdout)["members"]}
    assert "belongs to mirror 'PRODMIRROR'" in members["iris-b"]["error"]
    assert "synced" == members["iris-c"]["status"]
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)


def test_lone_surrogate_and_emoji_values_sync(lab: LabInfo) -> None:
    """Values IRIS can hold but UTF-8 cannot (a lone UTF-16 surrogate) survive drift and sync."""
    primary = member_home(lab, "iris-a")
    primary.set(CLIENT_D, ("emoji\U0001f600",), "\U0001f600" + "\ud83d")
    drift = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 2 == drift.returncode, drift.stdout + drift.stderr
    assert 0 == run_cli("sync", "-c", str(lab.config)).returncode
    assert "\U0001f600\ud83d" == member_home(lab, "iris-b").get(CLIENT_D, ("emoji\U0001f600",))
    assert 0 == run_cli("drift", "-c", str(lab.config)).returncode


def test_plan_shows_the_empty_primary_refusal(lab: LabInfo) -> None:
    """Plan mode predicts the refusal a sync would make, instead of a huge deletion."""
    for name in ITEM_GLOBALS:
        member_home(lab, "iris-a").kill(name)
    result = run_cli("plan", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    assert "refusing to empty the other members" in json.loads(result.stdout)["refusal"]


def test_unknown_mirror_is_a_usage_error(lab: LabInfo) -> None:
    """--mirror with a name the config lacks exits 64 naming the configured mirrors."""
    result = run_cli("drift", "-c", str(lab.config), "--mirror", "NOPE")
    assert 64 == result.returncode
    assert "configured: LABMIRROR" in result.stderr


def test_missing_password_source_is_a_config_error(lab: LabInfo) -> None:
    """An unset password variable stops the run before any connection, exit 78."""
    credentials = {"username": "mirrorsync", "password_env": "MS_UNSET_PASSWORD_VAR"}
    path = write_config(lab, "no-pw.yaml", {"iris": {"credentials": credentials}})
    result = run_cli("drift", "-c", str(path))
    assert 78 == result.returncode
    assert "MS_UNSET_PASSWORD_VAR is not set" in result.stderr


def test_state_directories_are_private(lab: LabInfo) -> None:
    """Every directory mirrorsync creates under the state dir is 0700 (exports hold secrets)."""
    assert 0 == run_cli("sync", "-c", str(lab.config)).returncode
    state = lab.directory / "state"
    modes = {p: p.stat().st_mode & 0o777 for p in [state, *state.rglob("*")] if p.is_dir()}
    assert {0o700} == set(modes.values()), modes


def test_ctrl_c_stops_at_a_safe_boundary_and_still_reports(lab: LabInfo) -> None:
    """A first Ctrl-C stops the sync before its next step, prints the report and exits 130."""
    slow = lab.directory / "slow-iris"
    slow.write_text('#!/bin/sh\nsleep 2\nexec iris "$@"\n')
    slow.chmod(0o755)
    config = yaml.safe_load(lab.config.read_text())
    config["mirrors"][0]["members"][2]["iris_command"] = str(slow)
    path = lab.directory / "slow-probe.yaml"
    path.write_text(yaml.safe_dump(config))
    snapshot = all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)
    process = subprocess.Popen(
        [sys.executable, "-m", "mirrorsync", "--log-format", "json", "sync", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert 130 == process.returncode, stdout + stderr
    assert "SIGINT received" in stdout
    assert "ERROR" == stdout.strip().splitlines()[-1]
    assert snapshot == all_nodes(member_home(lab, "iris-b"), ITEM_GLOBALS)


def test_credentials_never_typed_at_an_os_auth_prompt(lab: LabInfo) -> None:
    """With OS authentication on, configured credentials are not sent: typed at the %SYS>
    prompt they would run as ObjectScript (here: a password that sets a global)."""
    credentials = {"username": "mirrorsync", "password_env": "MS_TEST_PW"}
    path = write_config(lab, "creds-os-auth.yaml", {"iris": {"credentials": credentials}})
    result = run_cli("sync", "-c", str(path), env={"MS_TEST_PW": "set ^pwned=$H"})
    assert 0 == result.returncode, result.stdout + result.stderr
    for member in lab.members:
        assert None is member_home(lab, member.name).get("pwned")


def test_login_required_without_credentials_says_so(lab: LabInfo) -> None:
    """OS authentication off and no credentials configured: the error says what to configure."""
    for member in lab.members:
        member_home(lab, member.name).update_settings(os_auth=False)
    result = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    member = json.loads(result.stdout)["members"][0]
    assert "iris.credentials is not configured" in member["error"]


def test_no_fail_on_drift_is_refused_on_a_real_sync(lab: LabInfo) -> None:
    """A real sync never exits 0 for a held member: --no-fail-on-drift there is a usage error."""
    result = run_cli("sync", "-c", str(lab.config), "--no-fail-on-drift")
    assert 64 == result.returncode
    assert 0 == run_cli("sync", "-c", str(lab.config), "--dry-run", "--no-fail-on-drift").returncode


def test_drift_compares_a_newer_primary_with_older_members(lab: LabInfo) -> None:
    """During a rolling upgrade drift still compares (it writes nothing); sync refuses."""
    newer = "IRIS for UNIX (Ubuntu Server LTS for x86-64) 2025.1.2 (Build 231U) Mon Jul 7 2025"
    member_home(lab, "iris-a").update_settings(zv=newer)
    drift = run_cli("drift", "-c", str(lab.config), "--format", "json")
    assert 2 == drift.returncode, drift.stdout
    assert {"in_sync", "drift"} == {m["status"] for m in json.loads(drift.stdout)["members"]}
    sync = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == sync.returncode
    assert "newer to an older version is refused" in json.dumps(json.loads(sync.stdout))

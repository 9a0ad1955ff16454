"""Nothing lost: the fault matrix of issue 4 against the lab (real sshd, simulated IRIS).

After each fault every member is fully old or fully new by read-back, a snapshot exists where
an import was attempted, the next run converges, and the exit code and message say what
happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirrorsync.core.snapshots import SnapshotStore
from mirrorsync.lab.lab import LabInfo
from mirrorsync.sim.host import SimHost

pytestmark = pytest.mark.lab

ITEM_GLOBALS = [
    "OAuth2.Server.ClientD",
    "OAuth2.Server.ClientI",
    "OAuth2.Server.ClientS",
    "OAuth2.Client.MetaDataD",
    "OAuth2.Client.MetaDataI",
    "OAuth2.Client.MetaDataS",
]
Nodes = dict[tuple[str, tuple[Any, ...]], str]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as cron would."""
    return subprocess.run(
        [sys.executable, "-m", "mirrorsync", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def home(lab: LabInfo, name: str) -> SimHost:
    return SimHost(Path(next(m.iris_home for m in lab.members if m.name == name)))


def nodes(lab: LabInfo, name: str) -> Nodes:
    host = home(lab, name)
    return {(g, subs): value for g in ITEM_GLOBALS for subs, value in host.nodes(g)}


def variant(lab: LabInfo, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the lab config changed by ``edit``."""
    config = yaml.safe_load(lab.config.read_text())
    edit(config)
    path = lab.directory / name
    path.write_text(yaml.safe_dump(config))
    return path


def fast_retries(config: dict[str, Any]) -> None:
    config["retry"] = {"attempts": 2, "initial_wait": 0.1, "max_wait": 0.1}


def member_report(result: subprocess.CompletedProcess[str], name: str) -> dict[str, Any]:
    document = json.loads(result.stdout)
    return next(m for m in document["members"] if m["name"] == name)


def assert_old_or_new(lab: LabInfo, name: str, old: Nodes) -> str:
    """The member holds exactly its old item set or exactly the primary's; say which."""
    now = nodes(lab, name)
    if now == old:
        return "old"
    assert nodes(lab, "iris-a") == now, f"{name} is neither fully old nor fully new"
    return "new"


def assert_converges(lab: LabInfo, config: Path | None = None) -> None:
    """The next plain sync repairs everything and drift is then clean."""
    result = run_cli("sync", "-c", str(config or lab.config))
    assert 0 == result.returncode, result.stdout + result.stderr
    assert 0 == run_cli("drift", "-c", str(lab.config)).returncode
    for member in ("iris-b", "iris-c"):
        assert nodes(lab, "iris-a") == nodes(lab, member)


def test_load_failing_halfway_is_rolled_back(lab: LabInfo) -> None:
    """A Load that fails halfway inside the transaction leaves the member unchanged."""
    old = nodes(lab, "iris-b")
    home(lab, "iris-b").update_settings(fault_load_after_nodes=3)
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    report = member_report(result, "iris-b")
    assert "error" == report["status"]
    assert "FILEFULL" in report["error"]
    assert "the member is unchanged (verified by read-back)" in report["error"]
    assert "old" == assert_old_or_new(lab, "iris-b", old)
    assert "synced" == member_report(result, "iris-c")["status"]
    (backup,) = SnapshotStore(lab.directory / "state").all("LABMIRROR", "iris-b")
    assert {(g, tuple(str(x) for x in subs)): v for (g, subs), v in old.items()} == (
        backup.readout()
    )
    home(lab, "iris-b").update_settings(fault_load_after_nodes=None)
    assert_converges(lab)


def test_non_transactional_load_failure_is_restored_from_snapshot(lab: LabInfo) -> None:
    """If IRIS does not roll Load back, mirrorsync restores the snapshot and verifies it."""
    old = nodes(lab, "iris-b")
    home(lab, "iris-b").update_settings(fault_load_after_nodes=3, load_transactional=False)
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    report = member_report(result, "iris-b")
    assert f"restored from snapshot {report['snapshot']} (verified by read-back)" in report["error"]
    assert "old" == assert_old_or_new(lab, "iris-b", old)
    home(lab, "iris-b").update_settings(fault_load_after_nodes=None)
    assert_converges(lab)


def test_failed_restore_is_reported_loudly(lab: LabInfo) -> None:
    """If the restore itself fails, the report says so and names the snapshot to restore."""
    home(lab, "iris-b").update_settings(
        fault_load_after_nodes=3, fault_load_failures=2, load_transactional=False
    )
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 1 == result.returncode
    report = member_report(result, "iris-b")
    assert f"RESTORE OF SNAPSHOT {report['snapshot']} FAILED" in report["error"]
    assert f"mirrorsync restore --member iris-b --snapshot {report['snapshot']}" in report["error"]
    restore = run_cli(
        "restore",
        "-c",
        str(lab.config),
        "--member",
        "iris-b",
        "--snapshot",
        report["snapshot"],
        "--yes",
    )
    assert 0 == restore.returncode, restore.stdout + restore.stderr


def test_merging_load_host_still_ends_like_the_primary(lab: LabInfo) -> None:
    """On a host whose Load merges (/mergeglobal as a namespace default) the explicit kill in
    the import transaction still makes the member exactly the primary's copy."""
    home(lab, "iris-c").update_settings(load_kill="merge")
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 0 == result.returncode, result.stdout
    assert nodes(lab, "iris-a") == nodes(lab, "iris-c")


def test_corrupted_upload_is_never_imported(lab: LabInfo) -> None:
    """When the uploaded file's checksum does not match on the member, nothing is imported."""
    old = nodes(lab, "iris-b")
    member = next(m for m in lab.members if m.name == "iris-b")
    fake = Path(member.iris_home).parent / "bin" / "sha256sum"
    fake.write_text(
        '#!/bin/sh\necho "0000000000000000000000000000000000000000000000000000000000000000  $2"\n'
    )
    fake.chmod(0o755)
    result = run_cli("sync", "-c", str(variant(lab, "fast.yaml", fast_retries)), "--format", "json")
    assert 1 == result.returncode
    report = member_report(result, "iris-b")
    assert "error" == report["status"]
    assert "sha256" in report["error"].lower()
    assert "old" == assert_old_or_new(lab, "iris-b", old)
    fake.unlink()
    assert_converges(lab)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs: a member whose disk fills up. Needs root (CI runs as root)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,mode=1777", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_member_disk_full(lab: LabInfo, tiny_disk: Path) -> None:
    """A member whose work disk is full is reported and left fully old; others proceed."""
    old = nodes(lab, "iris-b")
    filler = tiny_disk / "filler"
    with suppress(OSError):
        filler.write_bytes(b"x" * 64 * 1024)

    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        config["mirrors"][0]["remote_tmp_dir"] = str(tiny_disk)

    # Only iris-b's work directory is on the tiny disk: give it its own mirror entry copy.
    result = run_cli("sync", "-c", str(variant(lab, "full.yaml", edit)), "--format", "json")
    assert 1 == result.returncode
    report = member_report(result, "iris-b")
    assert "error" == report["status"]
    assert "old" == assert_old_or_new(lab, "iris-b", old)
    filler.unlink(missing_ok=True)
    assert_converges(lab)


class CuttingProxy:
    """A TCP proxy in front of one sshd that cuts each connection after N client bytes."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        self.target = target
        self.cut_after = cut_after
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cuts = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if counted and sent + len(data) > self.cut_after:
                    self.cuts += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop = True
        self.server.close()


def test_connection_cut_during_upload(lab_factory: Callable[..., LabInfo]) -> None:
    """A connection cut mid-upload leaves the member fully old; the next run converges and
    removes the work directory the cut run could not."""
    lab = lab_factory(clients=300)
    member = next(m for m in lab.members if m.name == "iris-b")
    old = nodes(lab, "iris-b")
    proxy = CuttingProxy((member.address, member.port), cut_after=120_000)
    key = next(
        line.split(" ", 1)[1]
        for line in lab.known_hosts.read_text().splitlines()
        if line.startswith(f"[{member.address}]:{member.port} ")
    )
    known = lab.directory / "known_hosts_proxy"
    known.write_text(lab.known_hosts.read_text() + f"[127.0.0.1]:{proxy.port} {key}\n")

    def edit(config: dict[str, Any]) -> None:
        fast_retries(config)
        config["ssh"]["known_hosts"] = str(known)
        config["mirrors"][0]["members"][1].update(host="127.0.0.1", port=proxy.port)

    try:
        result = run_cli("sync", "-c", str(variant(lab, "cut.yaml", edit)), "--format", "json")
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    assert 1 == result.returncode, result.stdout
    assert "error" == member_report(result, "iris-b")["status"]
    assert "old" == assert_old_or_new(lab, "iris-b", old)
    leftovers = list((lab.directory / "remote-tmp").glob("mirrorsync-LABMIRROR-*"))
    for leftover in leftovers:
        os.utime(leftover, (0, 0))
    assert_converges(
        lab, variant(lab, "stale.yaml", lambda c: c.update(safety={"stale_after": 60}))
    )
    assert [] == [p for p in leftovers if p.exists()]


@contextmanager
def slow_load(lab: LabInfo, name: str, seconds: float) -> Iterator[None]:
    """Make one member's Load pause after its kill (the worst moment to be interrupted)."""
    home(lab, name).update_settings(fault_load_pause=seconds)
    try:
        yield
    finally:
        home(lab, name).update_settings(fault_load_pause=None)


def wait_for_upload(lab: LabInfo, timeout: float = 60) -> None:
    """Wait until some member holds an uploaded export (the import comes next)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((lab.directory / "remote-tmp").glob("mirrorsync-LABMIRROR-*/oauth2-export.xml")):
            return
        time.sleep(0.05)
    raise AssertionError("no upload seen")


def test_mirrorsync_killed_mid_import(lab: LabInfo) -> None:
    """Killing mirrorsync while a member is inside its Load leaves it fully old or fully new."""
    old = {name: nodes(lab, name) for name in ("iris-b", "iris-c")}
    with slow_load(lab, "iris-b", 2.0), slow_load(lab, "iris-c", 2.0):
        process = subprocess.Popen(
            [sys.executable, "-m", "mirrorsync", "sync", "-c", str(lab.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_upload(lab)
        time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        time.sleep(2.5)  # let an orphaned Load finish or die
    for name in ("iris-b", "iris-c"):
        assert_old_or_new(lab, name, old[name])
    assert_converges(lab)


def test_connection_lost_mid_import(lab: LabInfo) -> None:
    """If the member's sshd session dies mid-import, the read-back decides and says so."""
    old = nodes(lab, "iris-b")
    member = next(m for m in lab.members if m.name == "iris-b")
    with slow_load(lab, "iris-b", 2.0):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirrorsync",
                "--log-format",
                "json",
                "sync",
                "-c",
                str(lab.config),
                "--format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_upload(lab)
        time.sleep(0.5)
        sessions = subprocess.run(
            ["pgrep", "-P", str(member.sshd_pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in sessions:
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        stdout, _ = process.communicate(timeout=120)
    state = assert_old_or_new(lab, "iris-b", old)
    report = next(m for m in json.loads(stdout)["members"] if m["name"] == "iris-b")
    assert ("synced" if state == "new" else "error") == report["status"]
    assert_converges(lab)


def test_restore_across_storage_layouts_is_refused(lab: LabInfo) -> None:
    """A 2025.1 snapshot is never loaded into a member upgraded to 2025.2 (^SECURITY)."""
    import random

    from mirrorsync.sim import seed

    assert 0 == run_cli("sync", "-c", str(lab.config)).returncode
    (old_snapshot,) = SnapshotStore(lab.directory / "state").all("LABMIRROR", "iris-c")
    zv = "IRIS for UNIX (Ubuntu Server LTS for x86-64) 2025.2 (Build 227U) Mon Jul 7 2025"
    for member in lab.members:
        host = home(lab, member.name)
        for name in ITEM_GLOBALS:
            host.kill(name)
        host.update_settings(zv=zv)
        seed.write_security_baseline(host)
        seed.write_clients(host, seed.make_clients(4, random.Random(9)), "security-flat")
    before = dict(home(lab, "iris-c").nodes("SECURITY"))
    result = run_cli(
        "restore",
        "-c",
        str(lab.config),
        "--member",
        "iris-c",
        "--snapshot",
        old_snapshot.id,
        "--yes",
        "--format",
        "json",
    )
    assert 1 == result.returncode
    assert (
        "restoring it would put the data where this IRIS does not read it"
        in (json.loads(result.stdout)["refusal"])
    )
    assert before == dict(home(lab, "iris-c").nodes("SECURITY"))
    assert [] == home(lab, "iris-c").nodes("OAuth2.Server.ClientD")


def client_ids(lab: LabInfo, name: str) -> set[str]:
    return {str(subs[0]) for subs, _ in home(lab, name).nodes("OAuth2.Server.ClientD") if subs}


def test_max_deletes_holds_a_member_until_allowed(lab: LabInfo) -> None:
    """More member-only records than safety.max_deletes: the member is held (exit 2) with the
    reason, the others sync; --allow-deletes then deletes them (after a snapshot)."""
    target = home(lab, "iris-b")
    for index in range(4):  # 4 clients -> 8 data records (ClientD + MetaDataD), limit 5
        target.set("OAuth2.Server.ClientD", (f"rogue-{index}",), "x")
        target.set("OAuth2.Client.MetaDataD", (f"rogue-{index}",), "y")
    old = nodes(lab, "iris-b")
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 2 == result.returncode, result.stdout
    report = member_report(result, "iris-b")
    assert ("drift", True) == (report["status"], "more than safety.max_deletes=5" in report["held"])
    assert "synced" == member_report(result, "iris-c")["status"]
    assert old == nodes(lab, "iris-b")
    plan = run_cli("plan", "-c", str(lab.config))
    assert "held, not deleted (see 'held')" in plan.stdout
    allowed = run_cli("sync", "-c", str(lab.config), "--allow-deletes")
    assert 0 == allowed.returncode, allowed.stdout
    assert nodes(lab, "iris-a") == nodes(lab, "iris-b")
    assert len(SnapshotStore(lab.directory / "state").all("LABMIRROR", "iris-b")) == 1


def test_failover_guard_keeps_records_of_the_former_primary(lab: LabInfo) -> None:
    """After a failover, records only the former primary has (registered just before it
    failed) and its newer edits are neither deleted nor overwritten until an operator decides."""
    assert 0 == run_cli("sync", "-c", str(lab.config)).returncode  # baseline: iris-a primary
    old_primary = home(lab, "iris-a")
    old_primary.set("OAuth2.Server.ClientD", ("registered-before-failure",), "new client")
    some_client = sorted(client_ids(lab, "iris-a"))[0]
    old_primary.set("OAuth2.Server.ClientD", (some_client,), "rotated just before failure")
    old_primary.update_settings(mirror_status="BACKUP")
    home(lab, "iris-b").update_settings(mirror_status="PRIMARY")
    before = nodes(lab, "iris-a")
    result = run_cli("sync", "-c", str(lab.config), "--format", "json")
    assert 2 == result.returncode, result.stdout
    report = member_report(result, "iris-a")
    assert "drift" == report["status"]
    assert "present only on the former primary / other members" in report["held"]
    assert "1 record(s) changed on this member" in report["held"]
    assert before == nodes(lab, "iris-a")
    allowed = run_cli("sync", "-c", str(lab.config), "--allow-deletes")
    assert 0 == allowed.returncode
    assert nodes(lab, "iris-b") == nodes(lab, "iris-a")

"""A local simulated IRIS mirror: one real sshd and one simulated IRIS instance per member.

Layout of a lab directory::

    DIR/config.yaml          mirrorsync configuration for this lab
    DIR/hosts.json           what `lab_down` and the tests need: addresses, ports, sshd pids
    DIR/id_ed25519(.pub)     mirrorsync's client key
    DIR/known_hosts          every member's pinned host key
    DIR/authorized_keys      the client key, shared by every member's sshd
    DIR/state/               mirrorsync's state_dir
    DIR/hosts/<name>/        sshd_config, host key, sshd.pid, sshd.log
    DIR/hosts/<name>/bin/iris   wrapper running the simulator (only this sshd has it on PATH)
    DIR/hosts/<name>/iris/      the simulated instance (mirrorsync.sim.host.SimHost home)

Running `lab_up` on a directory whose lab is still running fails; on a stopped lab it replaces the
lab's own files (anything else in the directory is left alone).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import random
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import mirrorsync
from mirrorsync.lab.sshd import (
    LabError,
    SshdInstance,
    is_running_sshd,
    start_sshd,
    stop_sshd,
    write_private_key,
)

if TYPE_CHECKING:
    from mirrorsync.sim.seed import DriftSummary

MIRROR_NAME = "LABMIRROR"
INSTANCE = "IRIS"
MAX_MEMBERS = 26
FIRST_ADDRESS = 11
"""Member i listens on 127.0.0.(11 + i): distinct addresses make known_hosts entries realistic."""

# Files and folders a lab owns in its directory; replaced by a new `lab_up`, removed by purge.
_LAB_ENTRIES = (
    "config.yaml",
    "hosts.json",
    "id_ed25519",
    "id_ed25519.pub",
    "known_hosts",
    "authorized_keys",
    "hosts",
    "state",
    "remote-tmp",
)


@dataclass(frozen=True)
class LabMember:
    """One member of the lab mirror, as recorded in hosts.json."""

    name: str
    address: str
    port: int
    user: str
    instance: str
    identity_file: str
    known_hosts: str
    iris_home: str
    sshd_pid: int
    sshd_config: str
    role: str
    """``primary``, ``backup`` or ``async``."""

    def ssh_command(self) -> str:
        """The command an admin runs to reach this member's (simulated) IRIS terminal."""
        return shlex.join(
            [
                "ssh",
                "-i",
                self.identity_file,
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "IdentitiesOnly=yes",
                "-p",
                str(self.port),
                f"{self.user}@{self.address}",
                "iris",
                "session",
                self.instance,
                "-U",
                "%SYS",
            ]
        )


@dataclass(frozen=True)
class LabInfo:
    """What `lab_up` built."""

    directory: Path
    config: Path
    known_hosts: Path
    identity_file: Path
    members: tuple[LabMember, ...]
    drift: dict[str, DriftSummary] = field(default_factory=dict)
    """Per non-primary member: what the seeding changed relative to the primary."""

    def describe(self) -> str:
        """A short human summary for `mirrorsync lab up`."""
        lines = [f"Lab mirror {MIRROR_NAME} in {self.directory}", f"  config: {self.config}"]
        for member in self.members:
            lines.append(
                f"  {member.name:8} {member.role:8} {member.address}:{member.port}"
                f"  (sshd pid {member.sshd_pid})"
            )
        if self.members:
            lines.append(f"  terminal: {self.members[0].ssh_command()}")
        return "\n".join(lines)


def member_name(index: int) -> str:
    """``iris-a``, ``iris-b``, ...: member 0 is the primary, 1 the backup, the rest async."""
    return f"iris-{chr(ord('a') + index)}"


def _role(index: int) -> tuple[str, dict[str, Any]]:
    if index == 0:
        return "primary", {
            "mirror_is_member": 1,
            "mirror_status": "PRIMARY",
            "mirror_member_type": "Failover",
        }
    if index == 1:
        return "backup", {
            "mirror_is_member": 1,
            "mirror_status": "BACKUP",
            "mirror_member_type": "Failover",
        }
    return "async", {
        "mirror_is_member": 2,
        "mirror_status": "CONNECTED",
        "mirror_member_type": "Async",
    }


def _iris_wrapper(python: str, package_parent: Path, home: Path, name: str) -> str:
    # PYTHONPATH points at the code that built the lab, so the simulator runs whether mirrorsync
    # is installed or used from a checkout; sshd starts sessions in $HOME, not here.
    return (
        "#!/bin/sh\n"
        f"# Written by mirrorsync's lab: `iris` for simulated member {name} only.\n"
        f"PYTHONPATH={shlex.quote(str(package_parent))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(python)} -m mirrorsync.sim --home {shlex.quote(str(home))} "$@"\n'
    )


def _read_hosts(directory: Path) -> list[dict[str, Any]]:
    path = directory / "hosts.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise LabError(f"cannot read {path}: {error}") from None
    if not isinstance(data, list):
        raise LabError(f"{path} is not a lab hosts file")
    return [entry for entry in data if isinstance(entry, dict)]


def _recorded_sshds(directory: Path) -> list[tuple[str, int, Path]]:
    """Every sshd the lab may have started: (member, pid, sshd_config).

    From hosts.json and from each member's PidFile, so an sshd is found even if `lab_up` died
    before writing hosts.json.
    """
    found: dict[tuple[int, Path], str] = {}
    for entry in _read_hosts(directory):
        pid, config = entry.get("sshd_pid"), entry.get("sshd_config")
        if isinstance(pid, int) and isinstance(config, str):
            found[(pid, Path(config))] = str(entry.get("name"))
    for pid_file in sorted(directory.glob("hosts/*/sshd.pid")):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text(encoding="ascii").strip())
            found.setdefault((pid, pid_file.parent / "sshd_config"), pid_file.parent.name)
    return [(name, pid, config) for (pid, config), name in found.items()]


def _running_members(directory: Path) -> list[str]:
    return [
        name for name, pid, config in _recorded_sshds(directory) if is_running_sshd(pid, config)
    ]


def _remove_lab_entries(directory: Path) -> None:
    for entry in _LAB_ENTRIES:
        path = directory / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _seed(homes: list[Path], clients: int, seed: int) -> dict[str, DriftSummary]:
    """Give the primary realistic OAuth2 clients and every other member a drifted copy."""
    # Imported here, not at the top: the SSH tests use this package without the simulator.
    from mirrorsync.sim import seed as seeding
    from mirrorsync.sim.host import SimHost

    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography
    records = seeding.make_clients(clients, rng)
    # Three missing and one re-keyed client per member, fewer when there are not enough clients.
    missing = min(3, max(clients - 1, 0))
    changed_secret = min(1, clients - missing)
    drift: dict[str, DriftSummary] = {}
    for index, home in enumerate(homes):
        host = SimHost(home)
        seeding.write_clients(host, records)
        if index > 0:
            drift[member_name(index)] = seeding.drift_member(
                host, records, rng, missing=missing, changed_secret=changed_secret, extra=1
            )
    return drift


def lab_up(directory: Path, *, members: int = 3, clients: int = 12, seed: int = 1) -> LabInfo:
    """Build and start a lab mirror in ``directory``; see the module docstring for the layout.

    Raises `LabError` (after stopping whatever it started) if any sshd does not come up.
    """
    from mirrorsync.sim.host import HostSettings, SimHost

    if not 1 <= members <= MAX_MEMBERS:
        raise LabError(f"a lab has 1 to {MAX_MEMBERS} members, not {members}")
    if clients < 0:
        raise LabError(f"the number of clients cannot be negative: {clients}")
    directory = directory.expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    running = _running_members(directory)
    if running:
        raise LabError(
            f"a lab is already running in {directory} (members {', '.join(running)}); "
            f"stop it first with `mirrorsync lab down --dir {directory}`"
        )
    _remove_lab_entries(directory)

    user = getpass.getuser()
    identity = directory / "id_ed25519"
    authorized_keys = directory / "authorized_keys"
    known_hosts = directory / "known_hosts"
    public_line = write_private_key(identity)
    authorized_keys.write_text(public_line + " mirrorsync-lab\n", encoding="ascii")
    authorized_keys.chmod(0o600)
    (directory / "state").mkdir(mode=0o700)
    (directory / "remote-tmp").mkdir(mode=0o700)
    package_parent = Path(mirrorsync.__file__).resolve().parent.parent

    homes: list[Path] = []
    roles: list[str] = []
    for index in range(members):
        name = member_name(index)
        host_dir = directory / "hosts" / name
        bin_dir = host_dir / "bin"
        bin_dir.mkdir(parents=True)
        home = host_dir / "iris"
        role, mirror = _role(index)
        SimHost.create(
            home,
            HostSettings(
                node=name, instance=INSTANCE, mirror_name=MIRROR_NAME, os_auth=True, **mirror
            ),
        )
        wrapper = bin_dir / "iris"
        wrapper.write_text(_iris_wrapper(sys.executable, package_parent, home, name))
        wrapper.chmod(0o755)
        homes.append(home)
        roles.append(role)
    drift = _seed(homes, clients, seed)

    started: list[SshdInstance] = []
    try:
        for index in range(members):
            name = member_name(index)
            host_dir = directory / "hosts" / name
            started.append(
                start_sshd(
                    host_dir,
                    name=name,
                    address=f"127.0.0.{FIRST_ADDRESS + index}",
                    authorized_keys=authorized_keys,
                    user=user,
                    environment={
                        "PATH": f"{host_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                        "MIRRORSYNC_SIM_HOME": str(homes[index]),
                    },
                )
            )
    except BaseException:
        for instance in started:
            stop_sshd(instance.pid, instance.config)
        raise

    lab_members = tuple(
        LabMember(
            name=instance.name,
            address=instance.address,
            port=instance.port,
            user=user,
            instance=INSTANCE,
            identity_file=str(identity),
            known_hosts=str(known_hosts),
            iris_home=str(homes[index]),
            sshd_pid=instance.pid,
            sshd_config=str(instance.config),
            role=roles[index],
        )
        for index, instance in enumerate(started)
    )
    known_hosts.write_text(
        "".join(
            f"[{instance.address}]:{instance.port} {_public_key(instance)}\n"
            for instance in started
        ),
        encoding="ascii",
    )
    (directory / "hosts.json").write_text(
        json.dumps([asdict(member) for member in lab_members], indent=2) + "\n", encoding="utf-8"
    )
    config = directory / "config.yaml"
    config.write_text(lab_config_text(directory, lab_members), encoding="utf-8")
    return LabInfo(
        directory=directory,
        config=config,
        known_hosts=known_hosts,
        identity_file=identity,
        members=lab_members,
        drift=drift,
    )


def _public_key(instance: SshdInstance) -> str:
    """``type base64`` of the sshd's host key (the comment dropped)."""
    fields = Path(f"{instance.host_key}.pub").read_text(encoding="ascii").split()
    return f"{fields[0]} {fields[1]}"


def lab_config_text(directory: Path, members: tuple[LabMember, ...]) -> str:
    """Return the mirrorsync configuration for a lab (the header comment plus YAML)."""
    config = {
        "state_dir": str(directory / "state"),
        "ssh": {
            "known_hosts": str(directory / "known_hosts"),
            "connect_timeout": 5,
            "banner_timeout": 10,
            "auth_timeout": 10,
            "command_timeout": 60,
            "transfer_timeout": 120,
        },
        "mirrors": [
            {
                "name": MIRROR_NAME,
                # mirrorsync makes a private 0700 directory with a random name in it. Each lab
                # has its own (on this one machine every member shares it), so labs never see
                # each other's work directories.
                "remote_tmp_dir": str(directory / "remote-tmp"),
                "members": [
                    {
                        "name": member.name,
                        "host": member.address,
                        "port": member.port,
                        "user": member.user,
                        "identity_file": member.identity_file,
                        "instance": member.instance,
                    }
                    for member in members
                ],
            }
        ],
    }
    header = "# Written by `mirrorsync lab up`: a local simulated mirror.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def lab_down(directory: Path, *, purge: bool = False) -> None:
    """Stop every sshd of the lab in ``directory`` and wait for them to exit. Idempotent.

    The directory is left for inspection unless ``purge`` is true; purge only deletes a
    directory that holds a lab (a hosts.json), never an arbitrary one.
    """
    directory = directory.expanduser().resolve()
    for _name, pid, config in _recorded_sshds(directory):
        stop_sshd(pid, config)
    if purge and (directory / "hosts.json").exists():
        shutil.rmtree(directory)

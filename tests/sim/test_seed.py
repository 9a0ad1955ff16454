"""Realistic OAuth2 seed data and drift helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorsync import listcodec
from mirrorsync.sim import seed
from mirrorsync.sim.host import HostSettings, SimHost

from .support import seeded


def _host(tmp_path: Path) -> SimHost:
    return SimHost.create(tmp_path / "h", HostSettings(node="n", instance="IRIS"))


def test_clients_are_deterministic_for_a_seed() -> None:
    """The same seed gives the same clients (ids, secrets, names)."""
    assert seed.make_clients(5, seeded(7)) == seed.make_clients(5, seeded(7))


def test_client_record_layout(tmp_path: Path) -> None:
    """ClientD holds slots 1..19 in facts §6.1 order with a nested $LB of redirect URLs."""
    clients = seed.make_clients(30, seeded(1))
    host = _host(tmp_path)
    seed.write_clients(host, clients)
    client = clients[0]
    slots = listcodec.decode(host.get(seed.CLIENT_DATA, (client.client_id,)) or "")
    assert (32, 43) == (len(client.client_id), len(client.secret))
    assert ("", client.secret, client.name, client.name) == (
        slots[0],
        slots[1],
        slots[7],
        slots[18],
    )
    assert list(client.redirect_urls) == listcodec.decode(str(slots[2]))
    assert any(len(listcodec.decode(c.data_value())) > 19 for c in clients)
    assert any(any(ord(ch) > 255 for ch in c.name) for c in clients)
    assert any(
        "&" in c.description and "<" in c.description and '"' in c.description for c in clients
    )


def test_index_nodes_use_sqlupper_with_leading_space(tmp_path: Path) -> None:
    """Each client has ^OAuth2.Server.ClientI("NameIndex"," "_UPPER(Name),ClientId)=""."""
    clients = seed.make_clients(3, seeded(2))
    host = _host(tmp_path)
    seed.write_clients(host, clients)
    expected = sorted(("NameIndex", " " + c.name.upper(), c.client_id) for c in clients)
    assert expected == sorted(subs for subs, value in host.nodes(seed.CLIENT_INDEX) if value == "")


def test_names_are_unique_even_for_many_clients() -> None:
    """NameIndex is unique, so generated names never collide case-insensitively."""
    clients = seed.make_clients(60, seeded(3))
    assert 60 == len({c.name.upper() for c in clients})


def test_drift_member_reports_exactly_what_changed(tmp_path: Path) -> None:
    """drift_member removes, re-keys and adds exactly the ClientIds it reports."""
    clients = seed.make_clients(10, seeded(4))
    host = _host(tmp_path)
    seed.write_clients(host, clients)
    summary = seed.drift_member(host, clients, seeded(5), missing=3, changed_secret=1, extra=2)
    present = {str(subs[0]) for subs, _ in host.nodes(seed.CLIENT_DATA)}
    original = {c.client_id: c for c in clients}
    changed = {
        cid
        for cid in present & set(original)
        if host.get(seed.CLIENT_DATA, (cid,)) != original[cid].data_value()
    }
    assert (set(summary.missing), set(summary.changed_secret), set(summary.extra)) == (
        set(original) - present,
        changed,
        present - set(original),
    )
    assert (3, 1, 2) == (len(summary.missing), len(summary.changed_secret), len(summary.extra))


def test_remove_client_removes_all_its_nodes(tmp_path: Path) -> None:
    """remove_client deletes data, index and metadata nodes."""
    clients = seed.make_clients(2, seeded(6))
    host = _host(tmp_path)
    seed.write_clients(host, clients)
    seed.remove_client(host, clients[0])
    remaining = {subs[-1] for name in seed.SEED_GLOBALS for subs, _ in host.nodes(name)}
    assert {clients[1].client_id} == remaining


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (seed.CLASSIC, ("OAuth2.Server.ClientD", ("ID",))),
        (seed.SECURITY_FLAT, ("SECURITY", ("OAuth2.Server.ClientD", "ID"))),
        (seed.SECURITY_NESTED, ("SECURITY", ("OAuth2", "Server.ClientD", "ID"))),
    ],
)
def test_layouts_place_nodes(layout: str, expected: tuple[str, tuple[str, ...]]) -> None:
    """Each storage layout maps a classic node to its global and subscripts."""
    assert expected == seed.place(layout, "OAuth2.Server.ClientD", ("ID",))


@pytest.mark.parametrize(
    ("version", "expected"),
    [("2022.1.2", seed.CLASSIC), ("2025.1", seed.CLASSIC), ("2025.2", seed.SECURITY_FLAT)],
)
def test_default_layout_follows_the_version_rule(version: str, expected: str) -> None:
    """(major, minor) >= (2025, 2) means the IRISSECURITY layout (facts §6.2)."""
    assert expected == seed.default_layout(version)


def test_nested_layout_survives_the_official_recipe(tmp_path: Path) -> None:
    """Export of ^SECURITY("OAuth2") then Import restores clients and keeps users (facts §6.3)."""
    import io

    from mirrorsync.sim.session import Terminal, run_session

    host = _host(tmp_path)
    seed.write_security_baseline(host)
    clients = seed.make_clients(3, seeded(8))
    seed.write_clients(host, clients, seed.SECURITY_NESTED)
    before = host.nodes("SECURITY")
    target = tmp_path / "oauth2data.gbl"
    lines = [
        'set items = $name(^|"^^:ds:IRISSECURITY"|SECURITY("OAuth2"))_".gbl"',
        f'set filename = "{target}"',
        "do $SYSTEM.OBJ.Export(items,filename)",
    ]
    session_in = io.BytesIO(("\n".join(lines) + "\n").encode())
    run_session(host, "IRIS", "%SYS", None, Terminal(session_in, io.BytesIO(), io.BytesIO()))
    seed.drift_member(host, clients, seeded(9), missing=1, layout=seed.SECURITY_NESTED)
    session_in = io.BytesIO(f'do $SYSTEM.OBJ.Import("{target}")\n'.encode())
    run_session(host, "IRIS", "%SYS", None, Terminal(session_in, io.BytesIO(), io.BytesIO()))
    assert before == host.nodes("SECURITY")

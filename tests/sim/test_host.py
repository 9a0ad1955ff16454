"""The SimHost Python API: settings, storage, collation, persistence and locking."""

from __future__ import annotations

import json
import multiprocessing
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorsync.sim.collation import Tree, canonical, is_canonical_number, sub_key, to_decimal
from mirrorsync.sim.host import HostSettings, SimHost, UserSpec


def test_create_makes_private_directory_and_json_settings(tmp_path: Path) -> None:
    """create() makes HOME with mode 0700 and a readable instance.json."""
    home = tmp_path / "h"
    SimHost.create(home, HostSettings(node="n1", instance="iris"))
    data = json.loads((home / "instance.json").read_text())
    assert (0o700, "n1", "iris") == (
        stat.S_IMODE(home.stat().st_mode),
        data["node"],
        data["instance"],
    )


def test_passwords_are_stored_hashed(tmp_path: Path) -> None:
    """A user's plaintext password never reaches instance.json."""
    users = {"admin": UserSpec.with_password("s3cret-Pw")}
    SimHost.create(tmp_path / "h", HostSettings(node="n", instance="I", os_auth=False, users=users))
    assert "s3cret-Pw" not in (tmp_path / "h" / "instance.json").read_text()


def test_settings_round_trip_and_update(tmp_path: Path) -> None:
    """update_settings persists; a fresh SimHost sees the change."""
    host = SimHost.create(tmp_path / "h", HostSettings(node="n", instance="I"))
    host.update_settings(mirror_status="PRIMARY", mirror_is_member=1)
    reopened = SimHost(tmp_path / "h")
    assert ("PRIMARY", 1) == (reopened.settings.mirror_status, reopened.settings.mirror_is_member)


def test_set_get_kill_nodes_in_collation_order(tmp_path: Path) -> None:
    """Numbers collate before strings, numerically; the root node has ()."""
    host = SimHost.create(tmp_path / "h", HostSettings(node="n", instance="I"))
    keys: list[tuple[str | int, ...]] = [("b",), (10,), (2,), ("10a",), ("-1",), ("1.5",), ()]
    for subs in keys:
        host.set("G", subs, "v")
    host.set("G", (2, "x"), "w")
    expected = [(), (-1,), ("1.5",), (2,), (2, "x"), (10,), ("10a",), ("b",)]
    assert expected == [subs for subs, _ in SimHost(tmp_path / "h").nodes("G")]
    host.kill("G", (2,))
    assert (None, None, "v") == (host.get("G", (2,)), host.get("G", (2, "x")), host.get("G", (10,)))


def test_global_names_forget_killed_globals(tmp_path: Path) -> None:
    """A fully killed global no longer exists."""
    host = SimHost.create(tmp_path / "h", HostSettings(node="n", instance="I"))
    host.set("B", (1,), "x")
    host.set("A", (), "x")
    host.kill("B")
    assert ["A"] == host.global_names()


def test_empty_subscript_is_rejected(tmp_path: Path) -> None:
    """The API refuses "" subscripts like IRIS does (<SUBSCRIPT>)."""
    host = SimHost.create(tmp_path / "h", HostSettings(node="n", instance="I"))
    with pytest.raises(ValueError, match="SUBSCRIPT"):
        host.set("G", ("",), "x")


def _writer(home: str, worker: int) -> None:
    host = SimHost(Path(home))
    for index in range(25):
        host.set("C", (worker, index), "x")


def test_concurrent_writers_do_not_lose_updates(tmp_path: Path) -> None:
    """Four processes writing under the flock end with every node present."""
    SimHost.create(tmp_path / "h", HostSettings(node="n", instance="I"))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(tmp_path / "h"), n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert 100 == len(SimHost(tmp_path / "h").nodes("C"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12abc", "12"),
        ("--3", "3"),
        ("-.5e1x", "-5"),
        ("abc", "0"),
        ("1E2", "100"),
        (".", "0"),
        ("007.50", "7.5"),
    ],
)
def test_string_to_number_takes_the_numeric_prefix(text: str, expected: str) -> None:
    """M converts strings by their leading numeric prefix into canonical numbers."""
    assert expected == canonical(to_decimal(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("-1.5", True),
        (".5", True),
        ("0.5", False),
        ("01", False),
        ("1.0", False),
        ("-0", False),
        ("", False),
        ("1e2", False),
    ],
)
def test_canonical_number_detection(text: str, expected: bool) -> None:
    """Only canonical numbers collate as numbers."""
    assert expected == is_canonical_number(text)


def test_tree_order_and_query_directions() -> None:
    """$ORDER/$QUERY forwards and backwards over a small tree."""
    tree = Tree()
    for subs in [("1",), ("1", "a"), ("2",), ("x", "y")]:
        tree.set(subs, "v")
    assert (
        "1",
        "2",
        "x",
        "",
        "x",
        "2",
        ("1", "a"),
        ("2",),
        ("1",),
    ) == (
        tree.order(("",)),
        tree.order(("1",)),
        tree.order(("2",)),
        tree.order(("x",)),
        tree.order(("",), forward=False),
        tree.order(("x",), forward=False),
        tree.query(("1",)),
        tree.query(("1", "a")),
        tree.query(("1", "a"), forward=False),
    )


def test_decimal_canonical_forms() -> None:
    """Canonical output drops trailing zeros and the leading zero."""
    assert [".5", "-1.25", "0", "100"] == [
        canonical(Decimal("0.50")),
        canonical(Decimal("-1.250")),
        canonical(Decimal("-0")),
        canonical(Decimal("1E2")),
    ]


_subscript = st.one_of(
    st.integers(min_value=-1000, max_value=1000).map(str),
    st.decimals(places=2, min_value=-100, max_value=100, allow_nan=False).map(
        lambda d: str(canonical(d))
    ),
    st.text(min_size=1, max_size=4),
)


@given(st.sets(st.tuples(_subscript, _subscript), max_size=30))
def test_query_walk_visits_every_node_in_collation_order(nodes: set[tuple[str, str]]) -> None:
    """A $QUERY walk from the root returns every node once, sorted by the collation key."""
    tree = Tree()
    for subs in nodes:
        tree.set(subs, "v")
    walked: list[tuple[str, ...]] = []
    current: tuple[str, ...] | None = ()
    while True:
        current = tree.query(current or ())
        if current is None:
            break
        walked.append(current)
    assert sorted(nodes, key=lambda s: tuple(sub_key(p) for p in s)) == walked


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9
    )
)
def test_canonical_numbers_round_trip(number: Decimal) -> None:
    """canonical() output is canonical and converts back to the same value."""
    text = canonical(number)
    assert (True, number) == (is_canonical_number(text), to_decimal(text))


def test_concurrent_sessions_see_each_others_lines(tmp_path: Path) -> None:
    """Two simulator processes incrementing one global line by line lose no update."""
    home = tmp_path / "h"
    SimHost.create(home, HostSettings(node="n", instance="IRIS"))
    stdin = "set x=$increment(^N)\n" * 40 + "halt\n"
    command = [sys.executable, "-m", "mirrorsync.sim", "--home", str(home), "session", "IRIS"]
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for _ in range(2)
    ]
    for process in processes:
        process.communicate(stdin.encode(), timeout=60)
    assert "80" == SimHost(home).get("N")


def test_invalid_settings_are_rejected() -> None:
    """A misspelt load_kill or an impossible member kind fails at construction."""
    with pytest.raises(ValueError, match="load_kill"):
        HostSettings(node="n", instance="I", load_kill="merg")
    with pytest.raises(ValueError, match="mirror_is_member"):
        HostSettings(node="n", instance="I", mirror_is_member=3)

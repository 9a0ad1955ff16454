"""IRIS 2025.2+ scripts against the simulator: both ^SECURITY layouts and the %All rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorsync.errors import IrisError
from mirrorsync.iris import frames, results, scripts
from mirrorsync.iris.layout import (
    SecurityDiscovery,
    StorageLayout,
    detect_layout,
    flat_candidates,
    parse_security_discovery,
    plan_for,
    privilege_problem,
)
from mirrorsync.sim import seed
from mirrorsync.sim.host import HostSettings, SimHost

from .support import Runner, seeded

ZV_2025_2 = "IRIS for UNIX (Ubuntu Server LTS for x86-64) 2025.2 (Build 227U) Tue Jul 1 2025"
CLASSES = ("OAuth2.Server.Client", "OAuth2.Client.MetaData")


def _framed(run: Runner, line: str, token: str, target: SimHost | None = None) -> list[str]:
    """Run one product script in-process and return its frame payload."""
    return frames.parse_frame(run(line, "halt", target=target).stdout, token, what="test")


def _security_host(host: SimHost, layout: str, clients: int = 4, rng: int = 21) -> None:
    """Make ``host`` an IRIS 2025.2 member holding clients in ``layout`` plus users."""
    host.update_settings(zv=ZV_2025_2)
    seed.write_security_baseline(host)
    seed.write_clients(host, seed.make_clients(clients, seeded(rng)), layout)


def _discover(run: Runner, target: SimHost | None = None) -> SecurityDiscovery:
    """Run scripts.security_discover and parse it."""
    token = scripts.new_token()
    payload = _framed(run, scripts.security_discover(token), token, target)
    return parse_security_discovery(payload, "test")


def _probe(run: Runner) -> results.Probe:
    """Run scripts.probe and parse it."""
    token = scripts.new_token()
    return results.parse_probe(_framed(run, scripts.probe(token), token), "test")


def _security_nodes(host: SimHost) -> dict[tuple[str, ...], str]:
    """Every ^SECURITY node of a host, subscripts as strings."""
    return {tuple(str(s) for s in subs): value for subs, value in host.nodes("SECURITY")}


def test_flat_layout_is_discovered_without_users(run: Runner, host: SimHost) -> None:
    """security_discover lists the flat OAuth2 subscripts only (never UsersD or Version)."""
    _security_host(host, seed.SECURITY_FLAT)
    discovery = _discover(run)
    assert (True, dict.fromkeys(seed.SEED_GLOBALS, 10), StorageLayout.SECURITY_FLAT) == (
        discovery.access,
        dict(discovery.subscripts),
        detect_layout(_probe(run), discovery),
    )


def test_nested_layout_is_discovered(run: Runner, host: SimHost) -> None:
    """With the recipe's layout, the one "OAuth2" subtree is found and named nested."""
    _security_host(host, seed.SECURITY_NESTED)
    discovery = _discover(run)
    assert ({"OAuth2": 10}, StorageLayout.SECURITY_NESTED) == (
        dict(discovery.subscripts),
        detect_layout(_probe(run), discovery),
    )


def test_without_all_the_discovery_says_what_is_missing(run: Runner, host: SimHost) -> None:
    """Without %All, ^SECURITY raises <PROTECT>; the problem names %All (checked up front)."""
    _security_host(host, seed.SECURITY_FLAT)
    host.update_settings(os_user_roles=("%Manager",))
    discovery = _discover(run)
    problem = privilege_problem("iris-a", discovery) or ""
    assert (False, True, True) == (
        discovery.access,
        "<PROTECT>" in (discovery.access_error or ""),
        "%All" in problem,
    )


def test_flat_readout_reads_exactly_the_selected_subtrees(run: Runner, host: SimHost) -> None:
    """security_readout returns every node under the selected subscripts and nothing else."""
    _security_host(host, seed.SECURITY_FLAT)
    discovery = _discover(run)
    plan = plan_for(StorageLayout.SECURITY_FLAT, (), discovery, flat_candidates(CLASSES))
    token = scripts.new_token()
    payload = _framed(run, plan.readout()(token), token)
    parsed = results.parse_readout(payload, plan.names, "test")
    expected = {
        (subs[0], subs[1:]): value
        for subs, value in _security_nodes(host).items()
        if subs[0] in plan.names
    }
    assert (3, expected) == (len(plan.names), parsed)


@pytest.mark.parametrize("layout", [seed.SECURITY_FLAT, seed.SECURITY_NESTED])
def test_export_and_load_replace_oauth2_and_keep_users(
    layout: str, run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """Export on one 2025.2 host, load on a drifted one: OAuth2 matches, users stay untouched."""
    _security_host(host, layout, clients=5, rng=22)
    member = SimHost.create(tmp_path / "member", HostSettings(node="beta", instance="IRIS"))
    _security_host(member, layout, clients=5, rng=22)
    seed.drift_member(
        member, seed.make_clients(5, seeded(22)), seeded(3), missing=2, extra=1, layout=layout
    )
    member.set("SECURITY", ("UsersD", "member-only"), "kept")
    stray = "OAuth2.Server.ClientS"
    if layout == seed.SECURITY_FLAT:
        member.set("SECURITY", (stray, "x"), "stale")
    discovery = _discover(run)
    plan = plan_for(detect_layout(_probe(run), discovery), (), discovery, flat_candidates(CLASSES))
    path = str(tmp_path / "oauth2.xml")
    token = scripts.new_token()
    assert [] == _framed(run, plan.export(plan.names, path)(token), token)
    kill = [stray] if layout == seed.SECURITY_FLAT else []
    token = scripts.new_token()
    assert [] == _framed(run, plan.load(path, kill)(token), token, target=member)
    primary_nodes, member_nodes = _security_nodes(host), _security_nodes(member)
    oauth = lambda nodes: {k: v for k, v in nodes.items() if k[0].startswith("OAuth2")}  # noqa: E731
    assert oauth(primary_nodes) == oauth(member_nodes)
    assert "kept" == member_nodes[("UsersD", "member-only")]


def test_export_without_all_is_an_error(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """Exporting ^SECURITY without %All ends the frame with the <PROTECT> error."""
    _security_host(host, seed.SECURITY_FLAT)
    host.update_settings(os_user_roles=())
    token = scripts.new_token()
    script = scripts.security_export(token, ["OAuth2.Server.ClientD"], str(tmp_path / "x.xml"))
    with pytest.raises(IrisError, match="PROTECT"):
        _framed(run, script, token)


def test_security_kill_removes_only_the_named_subtrees(run: Runner, host: SimHost) -> None:
    """scripts.security_kill removes the named OAuth2 subtrees and leaves users alone."""
    _security_host(host, seed.SECURITY_FLAT)
    host.set("SECURITY", ("UsersD", "admin"), "kept")
    discovery = _discover(run)
    names = sorted(discovery.subscripts)
    token = scripts.new_token()
    assert [] == _framed(run, scripts.security_kill(token, names), token)
    remaining = _security_nodes(host)
    assert [] == [k for k in remaining if k[0] in names]
    assert "kept" == remaining[("UsersD", "admin")]

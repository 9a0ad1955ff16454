"""Layout decisions for mixed-version mirrors (pure functions of probes and discoveries)."""

from __future__ import annotations

import pytest

from mirrorsync.errors import ProtocolError
from mirrorsync.iris.layout import (
    SecurityDiscovery,
    StorageLayout,
    detect_layout,
    logical_readout,
    pair_refusal,
    parse_security_discovery,
)
from mirrorsync.iris.results import Probe

FLAT = StorageLayout.SECURITY_FLAT
NESTED = StorageLayout.SECURITY_NESTED
CLASSIC = StorageLayout.CLASSIC


def probe(version: str) -> Probe:
    """A primary's probe with only the version mattering."""
    return Probe(version, "zv", "%SYS", 1, True, False, False, "Failover", "PRIMARY", "M")


def test_layout_detection() -> None:
    """<=2025.1 is classic; 2025.2+ is flat, nested, mixed or empty by subscripts found."""
    flat = SecurityDiscovery(True, subscripts={"OAuth2.Server.ClientD": 10})
    nested = SecurityDiscovery(True, subscripts={"OAuth2": 10})
    mixed = SecurityDiscovery(True, subscripts={"OAuth2": 10, "OAuth2.ClientD": 10})
    assert [CLASSIC, FLAT, NESTED, StorageLayout.SECURITY_MIXED, StorageLayout.SECURITY_EMPTY] == [
        detect_layout(probe("2025.1.2"), flat),
        detect_layout(probe("2025.2"), flat),
        detect_layout(probe("2026.1"), nested),
        detect_layout(probe("2025.3"), mixed),
        detect_layout(probe("2025.2"), SecurityDiscovery(True)),
    ]


def test_different_layouts_are_refused() -> None:
    """A 2025.1 backup of a 2025.2 primary (rolling upgrade) is refused, naming both."""
    reason = pair_refusal("a", probe("2025.2"), FLAT, "b", probe("2025.1"), CLASSIC) or ""
    assert (True, True) == ("classic" in reason, "security-flat" in reason)


def test_newer_to_older_needs_the_setting() -> None:
    """Same layout, older target: refused by default, allowed with allow_newer_to_older."""
    args = ("a", probe("2025.3"), FLAT, "b", probe("2025.2"), FLAT)
    assert (True, None) == (
        "older" in (pair_refusal(*args) or ""),
        pair_refusal(*args, allow_newer_to_older=True),
    )


def test_older_to_newer_and_empty_targets_are_fine() -> None:
    """An older primary, or a 2025.2 member without OAuth2 data yet, may be written."""
    assert (None, None) == (
        pair_refusal("a", probe("2025.1"), CLASSIC, "b", probe("2025.1.2"), CLASSIC),
        pair_refusal(
            "a", probe("2025.2"), NESTED, "b", probe("2025.2"), StorageLayout.SECURITY_EMPTY
        ),
    )


def test_unsafe_subscripts_are_set_aside() -> None:
    """A subscript mirrorsync cannot quote safely is reported apart, never selected."""
    # "OAuth2 x" and "OAuth2.Server.ClientD" in Base64 of UTF-8.
    payload = ["ACCESS 1", "S T0F1dGgyIHg= 10", "S T0F1dGgyLlNlcnZlci5DbGllbnRE 10"]
    discovery = parse_security_discovery(payload, "t")
    assert ({"OAuth2.Server.ClientD": 10}, ("OAuth2 x",)) == (
        dict(discovery.subscripts),
        discovery.unsafe,
    )


def test_discovery_without_access_line_is_a_protocol_error() -> None:
    """A discovery payload without its ACCESS line is malformed, not "no data"."""
    with pytest.raises(ProtocolError):
        parse_security_discovery([], "t")


def test_nested_keys_read_as_former_globals() -> None:
    """("OAuth2", ("Server.ClientD", id)) reads as ("OAuth2.Server.ClientD", (id,))."""
    readout = {("OAuth2", ("Server.ClientD", "abc")): "v", ("OAuth2.ClientD", ("x",)): "w"}
    assert {("OAuth2.Server.ClientD", ("abc",)): "v", ("OAuth2.ClientD", ("x",)): "w"} == (
        logical_readout(readout)
    )

"""Framed output parsing and the script builders' pure parts."""

from __future__ import annotations

import base64

import pytest

from mirrorsync.errors import IrisError, IrisLoginError, ProtocolError
from mirrorsync.iris import scripts
from mirrorsync.iris.frames import parse_frame
from mirrorsync.iris.results import Role, parse_discovery, parse_probe, parse_readout


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


BANNER = "Node: iris-a, Instance: IRIS\n\n%SYS> \n"


def test_frame_payload_between_sentinels() -> None:
    """Payload lines are those between BEGIN and END:OK; prompts and blank lines are skipped."""
    out = BANNER + "<<MS:t1:BEGIN>>\nA 1\n\nB 2\n<<MS:t1:END:OK>>\n\n%SYS> \n"
    assert ["A 1", "B 2"] == parse_frame(out, "t1", what="x")


def test_missing_frame_is_protocol_error_with_tail() -> None:
    """No BEGIN line means failure, whatever the exit status, and the output tail is shown."""
    out = BANNER + "WRITE x\n^\n<UNDEFINED> *x\n%SYS> \n"
    with pytest.raises(ProtocolError, match=r"no result frame.*<UNDEFINED> \*x"):
        parse_frame(out, "t1", what="probe")


def test_unterminated_frame() -> None:
    """A frame without END (output cut, process killed) is a protocol error."""
    with pytest.raises(ProtocolError, match="not terminated"):
        parse_frame(BANNER + "<<MS:t1:BEGIN>>\nA 1\n", "t1", what="x")


def test_frame_of_other_token_is_ignored() -> None:
    """A frame with another token (stale or forged) does not count as ours."""
    out = BANNER + "<<MS:zz:BEGIN>>\n<<MS:zz:END:OK>>\n"
    with pytest.raises(ProtocolError):
        parse_frame(out, "t1", what="x")


def test_error_end_carries_iris_text() -> None:
    """END:ERR carries the Base64 IRIS error text, surfaced as IrisError."""
    text = "ERROR #5012: File '/x' does not exist"
    out = BANNER + f"<<MS:t1:BEGIN>>\n<<MS:t1:END:ERR {b64(text)}>>\n"
    with pytest.raises(IrisError, match="ERROR #5012"):
        parse_frame(out, "t1", what="import")


def test_access_denied_is_login_error() -> None:
    """'Access Denied' without a frame is reported as a login failure, not a parse error."""
    with pytest.raises(IrisLoginError):
        parse_frame(
            "Node: a, Instance: IRIS\n\nUsername: Password: \nAccess Denied\n", "t", what="x"
        )


def test_echoed_source_line_cannot_fake_a_sentinel() -> None:
    """The script's own text never contains a whole sentinel line (IRIS echoes failing lines)."""
    line = scripts.probe("tok")
    assert "<<MS:tok:BEGIN>>" not in line
    assert "<<MS:tok:END:OK>>" not in line


def test_probe_parsing_and_roles() -> None:
    """Probe output maps to version, $ZV and the role rules of facts §5."""
    zv = "IRIS for UNIX (Ubuntu Server LTS for x86-64) 2025.1 (Build 230.2U)"
    payload = [
        "VERSION 2025.1",
        f"ZV {b64(zv)}",
        "NAMESPACE %SYS",
        "MIRROR 1|1|0|0|Failover|PRIMARY|M",
    ]
    probe = parse_probe(payload, "a")
    assert (Role.PRIMARY, (2025, 1), zv) == (probe.role, probe.version_tuple, probe.zv)
    backup = parse_probe([*payload[:3], "MIRROR 1|0|1|0|Failover|BACKUP|M"], "b")
    transition = parse_probe([*payload[:3], "MIRROR 1|0|0|0|Failover|TRANSITION|M"], "b")
    asyncm = parse_probe([*payload[:3], "MIRROR 2|0|0|1|Disaster Recovery|CONNECTED|"], "c")
    assert [Role.BACKUP, Role.TRANSITION, Role.ASYNC] == [backup.role, transition.role, asyncm.role]
    with pytest.raises(ProtocolError, match="mirror line"):
        parse_probe([*payload[:3], "MIRROR 1|x"], "a")


def test_readout_round_trips_any_character() -> None:
    """Subscripts and values with control bytes and characters above 255 survive the read-out."""
    value = "\x05\x01one\x00\xff" + "日本"
    payload = [
        f"N G 0 {b64('root')}",
        f"N G 2 {b64('a' + chr(1))} {b64('5')} {b64(value)}",
        f"N G 1 {b64('empty')} ",
    ]
    nodes = parse_readout(payload, ["G"], "a")
    assert {("G", ()): "root", ("G", ("a\x01", "5")): value, ("G", ("empty",)): ""} == nodes


def test_readout_rejects_foreign_lines() -> None:
    """Anything but a well-formed node line in a read-out is a protocol error."""
    with pytest.raises(ProtocolError):
        parse_readout(["N G 2 YQ== Yg=="], ["G"], "a")
    with pytest.raises(ProtocolError):
        parse_readout(["<UNDEFINED> *x"], ["G"], "a")
    with pytest.raises(ProtocolError):
        parse_readout(["N Other 0 YQ=="], ["G"], "a")


def test_discovery_strips_caret_and_suggests_case_variants() -> None:
    """^$GLOBAL names are accepted with or without caret; case variants are suggested."""
    found = parse_discovery(
        ["D OAuth2.Client.MetaDataD 0", "D OAuth2.Server.ClientD 10", "G ^OAuth2.Client.MetadataD"],
        "a",
    )
    assert ("OAuth2.Server.ClientD",) == found.existing()
    assert ("OAuth2.Client.MetadataD",) == found.suggestions("OAuth2.Client.MetaDataD")


def test_quote_refuses_control_characters() -> None:
    """A literal with a newline could split the terminal line: refused."""
    assert '"a""b"' == scripts.quote('a"b')
    with pytest.raises(ValueError, match="control character"):
        scripts.quote("a\nb")


def test_session_input_puts_credentials_first() -> None:
    """Login answers are the first two stdin lines, then the script, then halt."""
    data = scripts.session_input(["write 1"], ("user", "pw"))
    assert b"user\npw\nwrite 1\nhalt\n" == data
    assert b"write 1\nhalt\n" == scripts.session_input(["write 1"], None)

"""$SYSTEM.OBJ.Export / Load of globals: console output, XML layout, kill-before-set, errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mirrorsync import listcodec
from mirrorsync.sim.host import SimHost
from mirrorsync.sim.xmlglobals import parse_qspec

from .support import Runner, body

ZV_2022 = (
    "IRIS for UNIX (Ubuntu Server LTS for x86-64 Containers) 2022.1.2 (Build "
    "574_0_22161U) Tue Jan 24 2023 12:00:00 EDT"
)


def test_export_matches_the_documented_file_and_console(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """Facts §1.1: same XML layout, zv cut after (Build ...), ts equal to the console time."""
    host.update_settings(zv=ZV_2022)
    host.set("OSEX.ipm.demo", ("settings", "numberGenerator"), "OSEX.ipm.numbers.Fibonacci")
    target = tmp_path / "out.xml"
    result = run(f'do $system.OBJ.Export("OSEX.ipm.demo.GBL","{target}")')
    console = re.search(
        r"%SYS>\n\nExporting to XML started on (\d\d)/(\d\d)/(\d{4}) (\d\d:\d\d:\d\d)\n"
        r"Exporting global: \^OSEX.ipm.demo\nExport finished successfully.\n\n%SYS>",
        result.stdout,
    )
    assert console is not None
    month, day, year, clock = console.groups()
    expected = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Export generator="IRIS" version="26" zv="IRIS for UNIX (Ubuntu Server LTS for x86-64 '
        f'Containers) 2022.1.2 (Build 574_0_22161U)" ts="{year}-{month}-{day} {clock}">\n'
        "<Global>\n"
        "<Node><Sub>^OSEX.ipm.demo</Sub>\n"
        "<Node><Sub>settings</Sub>\n"
        "<Node><Sub>numberGenerator</Sub>\n"
        "<Data>OSEX.ipm.numbers.Fibonacci</Data>\n"
        "</Node>\n"
        "</Node>\n"
        "</Node>\n"
        "</Global>\n"
        "</Export>\n"
    )
    assert expected == target.read_text("utf-8")


def test_root_value_and_data_before_children(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """A node with a value and children writes <Data> first; XML specials are escaped."""
    host.set("R", (), 'Hello <&> "World"')
    host.set("R", (1,), "one")
    host.set("R", (1, "a"), "1a")
    target = tmp_path / "r.xml"
    run(f'set sc=$system.OBJ.Export("^R.gbl","{target}","-d/diffexport")')
    expected = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Export generator="IRIS" version="26">\n<Global>\n'
        '<Node><Sub>^R</Sub>\n<Data>Hello &lt;&amp;&gt; "World"</Data>\n'
        "<Node><Sub>1</Sub>\n<Data>one</Data>\n<Node><Sub>a</Sub>\n<Data>1a</Data>\n</Node>\n</Node>\n"
        "</Node>\n</Global>\n</Export>\n"
    )
    assert expected == target.read_text("utf-8")


def test_diffexport_is_byte_identical_on_reexport(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """/diffexport omits zv and ts, so two exports of unchanged data are identical."""
    host.set("D", ("k",), listcodec.encode(["x", 1]))
    first, second = tmp_path / "1.xml", tmp_path / "2.xml"
    run(
        f'set sc=$system.OBJ.Export("D.GBL","{first}","-d/diffexport")',
        "hang 1.1",
        f'set sc=$system.OBJ.Export("D.GBL","{second}","-d/diffexport")',
    )
    assert first.read_bytes() == second.read_bytes()


def test_silent_export_prints_nothing(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """-d, /nodisplay and /displaylog=0 suppress the console lines."""
    host.set("S", (1,), "x")
    for qspec in ("-d", "/nodisplay", "/displaylog=0"):
        result = run(
            f'set sc=$system.OBJ.Export("S.GBL","{tmp_path / "s.xml"}","{qspec}") write sc'
        )
        assert "1" == body(result), qspec


def test_binary_values_round_trip_through_export_and_load(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """$LIST values (control chars) and unicode survive Export then Load byte for byte."""
    value = listcodec.encode(["Zürich 東京", 42, None, listcodec.encode(["https://a/cb"])])
    host.set("B", ("id1",), value)
    host.set("B", ("cr",), "line1\r\nline2\ttab")
    target = tmp_path / "b.xml"
    run(f'set sc=$system.OBJ.Export("B.GBL","{target}","-d")')
    host.kill("B")
    run(f'set sc=$system.OBJ.Load("{target}","-d")')
    assert [(("cr",), "line1\r\nline2\ttab"), (("id1",), value)] == host.nodes("B")


def test_load_kills_the_global_before_setting(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """Default Load replaces the global: nodes absent from the file disappear (facts §3)."""
    host.set("K", ("keep",), "1")
    target = tmp_path / "k.xml"
    run(f'set sc=$system.OBJ.Export("K.GBL","{target}","-d")')
    host.set("K", ("extra",), "2")
    result = run(f'do $system.OBJ.Load("{target}")')
    assert [(("keep",), "1")] == host.nodes("K")
    assert re.search(
        r"\n\nLoad started on \d\d/\d\d/\d{4} \d\d:\d\d:\d\d\nLoading file .*k\.xml as xml\n"
        r"Imported global: \^K\nLoad finished successfully\.\n",
        result.stdout,
    )


def test_mergeglobal_and_merge_hosts_keep_existing_nodes(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """/mergeglobal, or a host configured with load_kill="merge", does not kill first."""
    host.set("M", ("a",), "1")
    target = tmp_path / "m.xml"
    run(f'set sc=$system.OBJ.Export("M.GBL","{target}","-d")')
    host.set("M", ("b",), "2")
    run(f'set sc=$system.OBJ.Load("{target}","-d/mergeglobal")')
    assert [(("a",), "1"), (("b",), "2")] == host.nodes("M")
    host.update_settings(load_kill="merge")
    run(f'set sc=$system.OBJ.Load("{target}","-d")')
    assert [(("a",), "1"), (("b",), "2")] == host.nodes("M")


def test_subscripted_export_kills_only_that_subtree(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """Exporting ^SECURITY("OAuth2") and loading it leaves sibling subscripts alone."""
    host.set("SECURITY", ("OAuth2", "c1"), "x")
    host.set("SECURITY", ("UsersD", "admin"), "u")
    target = tmp_path / "sec.gbl"
    result = run(
        'set items=$name(^|"^^:ds:IRISSECURITY"|SECURITY("OAuth2"))_".gbl"',
        f'do $SYSTEM.OBJ.Export(items,"{target}")',
    )
    assert 'Exporting global: ^|"^^:ds:IRISSECURITY"|SECURITY("OAuth2")' in result.stdout
    host.set("SECURITY", ("OAuth2", "stale"), "y")
    run(f'do $SYSTEM.OBJ.Import("{target}")')
    assert [(("OAuth2", "c1"), "x"), (("UsersD", "admin"), "u")] == host.nodes("SECURITY")


def test_missing_file_is_error_5012(run: Runner, tmp_path: Path) -> None:
    """Loading a missing file prints ERROR #5012, returns an error status, no success line."""
    missing = tmp_path / "nope.xml"
    result = run(f'set sc=$system.OBJ.Load("{missing}") write !,$system.Status.GetErrorText(sc)')
    text = f"ERROR #5012: File '{missing}' does not exist"
    assert (2, False) == (result.stdout.count(text), "Load finished successfully." in result.stdout)


def test_malformed_file_writes_nothing(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """A truncated XML file is an error and no global is touched."""
    host.set("X", (1,), "orig")
    bad = tmp_path / "bad.xml"
    bad.write_text(
        '<?xml version="1.0"?>\n<Export><Global><Node><Sub>^X</Sub><Data>new</Data>', "utf-8"
    )
    result = run(f'set sc=$system.OBJ.Load("{bad}","-d") write $system.Status.IsOK(sc)')
    assert ("0", [((1,), "orig")]) == (body(result), host.nodes("X"))


def test_load_accepts_cache_header_and_indentation(
    run: Runner, host: SimHost, tmp_path: Path
) -> None:
    """Files without zv/ts, indented, or with generator="Cache" version="25" load."""
    source = tmp_path / "old.xml"
    source.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Export generator="Cache" version="25" zv="Cache for UNIX 2013.1 (Build 446U)"'
        ' ts="2013-06-21 14:26:34">\n'
        "  <Global>\n    <Node><Sub>^My.Settings</Sub>\n"
        "      <Node><Sub>Mode</Sub><Data>Example</Data></Node>\n"
        "      <Node><Sub>Parameter</Sub><Data>42</Data></Node>\n"
        "    </Node>\n  </Global>\n</Export>\n",
        "utf-8",
    )
    second = tmp_path / "two.xml"
    second.write_text(
        '<Export generator="IRIS" version="26"><Global>'
        "<Node><Sub>^Two</Sub><Data>2</Data></Node></Global></Export>",
        "utf-8",
    )
    run(f'set sc=$system.OBJ.Load("{source}*{second}","-d")')
    assert ([(("Mode",), "Example"), (("Parameter",), "42")], [((), "2")]) == (
        host.nodes("My.Settings"),
        host.nodes("Two"),
    )


def test_export_of_missing_global_is_an_error(run: Runner, tmp_path: Path) -> None:
    """A nonexistent global gives an error status and an ERROR # line, and no file."""
    target = tmp_path / "none.xml"
    result = run(
        f'set sc=$system.OBJ.Export("Nope.GBL","{target}") write !,"IsOK=",$system.Status.IsOK(sc)'
    )
    assert (True, True, False) == (
        "ERROR #" in result.stdout,
        "IsOK=0" in result.stdout,
        target.exists(),
    )


def test_export_file_uses_the_process_umask(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """The export file is created with the umask (not chmod-ed)."""
    host.set("U", (1,), "x")
    target = tmp_path / "u.xml"
    old = os.umask(0o077)
    try:
        run(f'set sc=$system.OBJ.Export("U.GBL","{target}","-d")')
    finally:
        os.umask(old)
    assert 0o600 == target.stat().st_mode & 0o777


def test_load_inside_a_transaction_rolls_back(run: Runner, host: SimHost, tmp_path: Path) -> None:
    """Load's kills and sets are journaled: TROLLBACK restores the previous content."""
    host.set("J", ("a",), "1")
    target = tmp_path / "j.xml"
    run(f'set sc=$system.OBJ.Export("J.GBL","{target}","-d")')
    host.set("J", ("a",), "changed")
    host.set("J", ("b",), "2")
    run("tstart", f'set sc=$system.OBJ.Load("{target}","-d")', "trollback")
    assert [(("a",), "changed"), (("b",), "2")] == host.nodes("J")


@pytest.mark.parametrize(
    ("qspec", "display", "diff", "merge"),
    [
        ("", True, False, False),
        ("-d", False, False, False),
        ("d/diffexport", True, True, False),
        ("/nodisplay/mergeglobal", False, False, True),
        ("/displaylog=0/diffexport=1", False, True, False),
        (" /mergeglobal", True, False, True),
    ],
)
def test_qspec_parsing(qspec: str, display: bool, diff: bool, merge: bool) -> None:
    """Flags come first; qualifiers negate with /no or =0 (facts §2)."""
    parsed = parse_qspec(qspec)
    assert (display, diff, merge) == (parsed.display_log, parsed.diffexport, parsed.mergeglobal)


def test_export_to_current_device_and_unwritable_path(run: Runner, host: SimHost) -> None:
    """An empty file name writes the XML to the terminal; a bad directory is error 5005."""
    host.set("V", (1,), "x")
    shown = body(run('set sc=$system.OBJ.Export("V.GBL","","-d/diffexport")'))
    failed = body(
        run(
            'set sc=$system.OBJ.Export("V.GBL","/nonexistent/dir/v.xml","-d")'
            " write $system.Status.GetErrorText(sc)"
        )
    )
    assert (True, True) == (
        "<Node><Sub>1</Sub>" in shown,
        failed.startswith("ERROR #5005: Cannot open file '/nonexistent/dir/v.xml"),
    )


def test_unicode_surrogates_survive_storage(run: Runner, host: SimHost) -> None:
    """A lone surrogate character can be stored and read back (JSON escapes it)."""
    run("set ^W=$c(55296)_$c(65)")
    assert "\ud800A" == host.get("W")

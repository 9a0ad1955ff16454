"""ObjectScript semantics of the simulator, run in-process through the session loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorsync import listcodec
from mirrorsync.sim.host import SimHost

from .support import Runner, body


def out(run: Runner, *lines: str) -> str:
    """Output of the lines (banner and prompts stripped)."""
    return body(run(*lines))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1+2*3", "9"),
        ("2*(3+4)", "14"),
        ("-1+3", "2"),
        ("'0+1", "2"),
        ("10/4", "2.5"),
        ("-7\\2", "-3"),
        ("-7#3", "2"),
        ("7#-3", "-2"),
        ("2**10", "1024"),
        ("1/3", ".3333333333333333333"),
        ('"3abc"+1', "4"),
        ('+"-.50x"', "-.5"),
        ('"1.50"*1', "1.5"),
        ("0.10", ".1"),
        ('"a"_"b"_1', "ab1"),
        ("1=1&(2>1)", "1"),
        ('"abc"["b"', "1"),
        ('"b"]"a"', "1"),
        ("2]]10", "0"),
        ('"a"]]10', "1"),
        ("1'=2", "1"),
        ('"123"?3N', "1"),
        ('"12a"?.N1A', "1"),
        ('"ab"\'?1.N', "1"),
        ("0||1", "1"),
        ("0&&x", "0"),
    ],
)
def test_operators_are_evaluated_left_to_right(run: Runner, expression: str, expected: str) -> None:
    """Binary operators have no precedence; numbers print in canonical form."""
    assert expected == out(run, f"write {expression}")


def test_divide_by_zero_is_an_error(run: Runner) -> None:
    """1/0 raises <DIVIDE>, shown with the source line and a caret."""
    assert "write 1/0\n^\n<DIVIDE>" == out(run, "write 1/0")


def test_undefined_local_and_global(run: Runner) -> None:
    """Plain reads of missing nodes raise <UNDEFINED> naming the reference."""
    assert "write x\n^\n<UNDEFINED> *x" == out(run, "write x")
    assert 'write ^G("x")\n^\n<UNDEFINED> *^G("x")' == out(run, 'write ^G("x")')


def test_errors_do_not_stop_the_session_or_change_the_exit_status(run: Runner) -> None:
    """After an error the next line still runs and the exit status stays 0."""
    result = run("write x", 'write "next"', "halt")
    assert (0, True) == (result.status, "next" in result.stdout)


def test_unknown_function_class_and_method(run: Runner) -> None:
    """Unknown names fail the way IRIS fails."""
    assert "<FUNCTION>" == out(run, "write $foo(1)").splitlines()[-1]
    assert (
        "<CLASS DOES NOT EXIST> *%SYSTEM.Foo"
        == out(run, "write $SYSTEM.Foo.Bar()").splitlines()[-1]
    )
    assert (
        "<METHOD DOES NOT EXIST> *Bar,%SYSTEM.Mirror"
        == (out(run, "write ##class(%SYSTEM.Mirror).Bar()").splitlines()[-1])
    )


def test_unsupported_construct_is_syntax_plus_stderr_note(run: Runner) -> None:
    """A valid but unimplemented construct gives <SYNTAX> and a developer note on stderr."""
    result = run("write $zdatetime($h,3)")
    assert ("<SYNTAX>", True) == (
        body(result).splitlines()[-1],
        "mirrorsync.sim: unsupported: function $zdatetime" in result.stderr,
    )


def test_parse_error_and_macros_are_syntax_errors(run: Runner) -> None:
    """Unparsable lines and $$$macros (no preprocessor at the prompt) give <SYNTAX>."""
    assert "<SYNTAX>" == out(run, "write $lb(1").splitlines()[-1]
    assert "<SYNTAX>" == out(run, "write $$$OK").splitlines()[-1]


def test_set_kill_data_get_order(run: Runner) -> None:
    """Globals collate numbers first, then strings; $ORDER works both ways."""
    lines = [
        'set ^G(10)="a",^G(2)="b",^G("x")="c",^G("x",1)="d",^G(-1.5)="e"',
        'set s="" for { set s=$order(^G(s)) quit:s=""  write s,"," }',
        (
            'write !,$order(^G(""),-1),"|",$order(^G(2),-1),"|",$data(^G("x")),$data(^G(2)'
            "),$data(^G(7))"
        ),
        'write !,$get(^G(7),"dflt"),"|",$get(^G(2))',
        'kill ^G("x") write !,$data(^G("x"))',
    ]
    assert "-1.5,2,10,x,\nx|-1.5|1110\ndflt|b\n0" == out(run, *lines)


def test_empty_subscript_is_a_subscript_error(run: Runner) -> None:
    """Setting a node with a "" subscript raises <SUBSCRIPT>."""
    assert '<SUBSCRIPT> *^G("")' == out(run, 'set ^G("")=1').splitlines()[-1]


def test_query_walk_round_trips_through_indirection(run: Runner, host: SimHost) -> None:
    """$QUERY references, including control characters, work with @ and $QSUBSCRIPT."""
    host.set("Q", ("a\x01b", 2), "v1")
    host.set("Q", ('q"t',), "v2")
    lines = [
        (
            'set ref="^Q" for { set ref=$query(@ref) quit:ref=""  write ref,"=",@ref,'
            '"|",$qs(ref,1)=$c(97,1,98),$ql(ref),! }'
        )
    ]
    assert '^Q("a"_$c(1)_"b",2)=v1|12\n^Q("q""t")=v2|01' == out(run, *lines)


def test_global_directory(run: Runner, host: SimHost) -> None:
    """$ORDER over ^$GLOBAL lists global names with the caret."""
    host.set("OAuth2.Server.ClientD", ("x",), "1")
    host.set("A", (), "1")
    line = 'set n="" for { set n=$order(^$GLOBAL(n)) quit:n=""  write n,"," }'
    assert "^A,^OAuth2.Server.ClientD," == out(run, line)


def test_list_functions(run: Runner) -> None:
    """$LISTBUILD stores numbers as numbers; $LIST/$LG/$LL/$LD/$LISTVALID behave."""
    lines = [
        (
            'set x=$lb("a",1,,2.5) write $ll(x),$lg(x,3,"d"),$li(x,4),$ld(x,3),$listvalid(x)'
            ',$listvalid("z")'
        ),
        'write !,x=$lb("a",1,,2.5),$lb(1)=$lb("1")',
        'set $list(x,2)="b" write !,$li(x,2),$ll(x)',
    ]
    assert "4d2.5010\n10\nb4" == out(run, *lines)


def test_listbuild_bytes_match_the_codec(run: Runner, host: SimHost) -> None:
    """A $LB written by ObjectScript is the codec's encoding (number typed as a number)."""
    run('set ^L=$lb("a",1,,2.5,-3)')
    assert [
        "a",
        1,
        None,
        listcodec.decode(listcodec.encode([__import__("decimal").Decimal("2.5")]))[0],
        -3,
    ] == (listcodec.decode(host.get("L") or ""))


def test_string_functions(run: Runner) -> None:
    """$PIECE, $EXTRACT (with *), $FIND, $TRANSLATE, $REPLACE, $CHAR, $ASCII, $LENGTH, $JUSTIFY."""
    lines = [
        (
            'write $p("a,b,c",",",2),$e("hello",2,*-1),$f("abc","b"),$tr("abc","ab",'
            '"A"),$replace("aXbX","X","-")'
        ),
        'write !,$a("A"),$l("a,b",","),$l("abc"),$j(5,3),$j(2.5,6,2),$c(72,105)',
        'set y="a,b" set $p(y,",",4)="d" write !,y',
    ]
    assert "bell3Aca-b-\n6523  5  2.50Hi\na,b,,d" == out(run, *lines)


def test_zconvert_and_base64(run: Runner) -> None:
    """UTF-8 conversion then Base64 round trips characters above 255."""
    lines = [
        'set s=$system.Encryption.Base64Encode($zconvert("Zürich €","O","UTF8"))',
        (
            'write s,"|",$zconvert($system.Encryption.Base64Decode(s),"I","UTF8")="Zürich '
            '€",$zcvt("aB","U")'
        ),
    ]
    assert "WsO8cmljaCDigqw=|1AB" == out(run, *lines)


def test_base64_of_wide_characters_is_illegal_value(run: Runner) -> None:
    """Base64Encode of a char above 255 raises <ILLEGAL VALUE>."""
    assert (
        "<ILLEGAL VALUE>" == out(run, 'write $system.Encryption.Base64Encode("€")').splitlines()[-1]
    )


def test_base64_wraps_at_76_with_crlf(run: Runner) -> None:
    """ASSUMPTION-backed: the default output has CR LF every 76 chars; flag 1 does not."""
    lines = [
        'set e=$system.Encryption.Base64Encode($tr($j("",100)," ","a")) write $l(e),$f(e,$c(13,10))'
    ]
    assert "13879" == out(run, *lines)
    assert "136" == out(run, 'write $l($system.Encryption.Base64Encode($tr($j("",100)," ","a"),1))')


def test_sha_hash(run: Runner) -> None:
    """SHAHash(256,...) returns the raw digest."""
    line = (
        'write $l($system.Encryption.SHAHash(256,"abc")),$a($system.Encryption.SHAHash(256,"abc"))'
    )
    assert "32186" == out(run, line)


def test_select_case_increment(run: Runner) -> None:
    """$SELECT, $CASE with default, $INCREMENT on a global."""
    lines = ['write $s(0:"a",1:"b"),$case(2,1:"x",2:"y",:"z"),$case(9,1:"x",:"z"),$i(^C),$i(^C,5)']
    assert "byz16" == out(run, *lines)


def test_for_forms_and_quit(run: Runner) -> None:
    """FOR with ranges, lists, argumentless with QUIT, nested blocks, WHILE and DO WHILE."""
    lines = [
        "for i=1:1:3 write i",
        'for i="a","b" { write i }',
        'for i=10:-5:1 write i,","',
        "set n=0 for  set n=n+1 quit:n>2",
        "write n",
        "set k=0 while k<3 { set k=k+1 } write k",
        "set k=0 do { set k=k+2 } while k<5 write k",
        "for i=1:1 { quit:i>4  write i }",
    ]
    assert "123\nab\n10,5,\n3\n3\n6\n1234" == out(run, *lines)


def test_if_elseif_else_and_old_style(run: Runner) -> None:
    """Block IF chains and old-style IF/ELSE with $TEST."""
    lines = [
        'set a=2 if a=1 { write "one" } elseif a=2 { write "two" } else { write "other" }',
        'if a=3 write "three"',
        'else  write "not three"',
        "write $test",
    ]
    assert "two\nnot three\n0" == out(run, *lines)


def test_postconditionals(run: Runner) -> None:
    """Commands with :cond run only when cond is true."""
    assert "y" == out(run, 'write:0 "x" write:1 "y" set:0 z=1 write:$d(z) "z"')


def test_try_catch_exception_properties(run: Runner) -> None:
    """A system error inside TRY binds an exception object with Name/Code/Data/DisplayString."""
    line = (
        'try { write x } catch ex { write ex.Name,"|",ex.Data,"|",ex.DisplayString()'
        ',"|",$system.Status.GetErrorText(ex.AsStatus()) }'
    )
    assert "<UNDEFINED>|x|<UNDEFINED> 9 x|ERROR #5002: ObjectScript error: <UNDEFINED> *x" == out(
        run, line
    )


def test_throw_general_exception(run: Runner) -> None:
    """THROW of %Exception.General reaches CATCH with its properties."""
    line = (
        'try { throw ##class(%Exception.General).%New("MyErr",5001,,"detail") } '
        "catch e { write e.Name,e.Code,e.Data }"
    )
    assert "MyErr5001detail" == out(run, line)


def test_status_api(run: Runner) -> None:
    """%Status values: OK, Error, IsOK, IsError, GetErrorText, GetErrorCodes."""
    lines = [
        (
            'set sc=$system.Status.Error(5001,"boom") write $system.Status.IsOK(sc)'
            ",$system.Status.IsError(sc)"
        ),
        (
            "write !,$system.Status.GetErrorText(sc),!,$system.Status.GetErrorCodes(sc)"
            ",!,$system.Status.IsOK($system.Status.OK())"
        ),
    ]
    assert "01\nERROR #5001: boom\n5001\n1" == out(run, *lines)


def test_transactions_roll_back(run: Runner, host: SimHost) -> None:
    """TROLLBACK restores killed and overwritten nodes; the prompt shows TL1: while open."""
    host.set("T", (1,), "old")
    host.set("T", (1, 2), "child")
    result = run(
        "tstart",
        'set ^T(1)="new",^T(3)=1 kill ^T(1,2)',
        "write $tlevel",
        "trollback",
        "write $tlevel",
    )
    assert "TL1:%SYS>" in result.stdout
    assert [((1,), "old"), ((1, 2), "child")] == host.nodes("T")


def test_open_transaction_is_rolled_back_at_halt(run: Runner, host: SimHost) -> None:
    """Ending the session with an open transaction rolls it back."""
    run("tstart", "set ^T(5)=1", "halt")
    assert [] == host.nodes("T")


def test_committed_transaction_persists(run: Runner, host: SimHost) -> None:
    """TCOMMIT keeps the changes."""
    run("tstart", "set ^T(5)=1", "tcommit", "halt")
    assert [((5,), "1")] == host.nodes("T")


def test_namespace_switches(run: Runner) -> None:
    """ZN and SET $NAMESPACE change the prompt; unknown namespaces fail."""
    result = run(
        'zn "USER"', 'set $namespace="%SYS"', "write $namespace", 'zn "NOPE"', namespace="USER"
    )
    prompts = [line for line in result.stdout.split("\n") if line.endswith(">")]
    assert ["USER>", "USER>", "%SYS>", "%SYS>", "%SYS>"] == prompts[:5]
    assert "<NAMESPACE> *NOPE" in result.stdout


def test_mirror_api_primary(run: Runner) -> None:
    """A primary failover member reports 1|1|0|0 and its mirror name."""
    line = (
        "write $SYSTEM.Mirror.IsMember(),$SYSTEM.Mirror.IsPrimary(),$SYSTEM.Mirror.IsBackup()"
        ',$SYSTEM.Mirror.IsAsyncMember(),"|",$SYSTEM.Mirror.MirrorName(),"|",$lg($SYSTEM.Mirror.GetMemberStatus()'
        ")"
    )
    assert "1100|MIRRORA|Primary" == out(run, line)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"mirror_status": "BACKUP"}, "1|0|1|0|Failover|BACKUP|MIRRORA"),
        ({"mirror_status": "TRANSITION"}, "1|0|0|0|Failover|TRANSITION|MIRRORA"),
        (
            {
                "mirror_is_member": 2,
                "mirror_status": "CONNECTED",
                "mirror_member_type": "Disaster Recovery",
            },
            "2|0|0|1|Disaster Recovery|CONNECTED|",
        ),
        (
            {
                "mirror_is_member": 0,
                "mirror_status": "NOTINIT",
                "mirror_member_type": "Not Member",
                "mirror_name": "",
            },
            "0|0|0|0|Not Member|NOTINIT|",
        ),
    ],
)
def test_mirror_api_roles(
    run: Runner, host: SimHost, changes: dict[str, object], expected: str
) -> None:
    """Backup, transition, async and non-members derive their flags per facts §5."""
    host.update_settings(**changes)
    line = (
        'write $SYSTEM.Mirror.IsMember(),"|",$SYSTEM.Mirror.IsPrimary(),"|"'
        ",$SYSTEM.Mirror.IsBackup()"
        ',"|",$SYSTEM.Mirror.IsAsyncMember(),"|",$SYSTEM.Mirror.GetMemberType()'
        ',"|",$SYSTEM.Mirror.GetStatus(),"|",$SYSTEM.Mirror.MirrorName()'
    )
    assert expected == out(run, line)


def test_version_api(run: Runner, host: SimHost) -> None:
    """GetNumber/GetMajor/GetMinor parse $ZV like %SYSTEM.Version."""
    host.update_settings(
        zv=(
            "IRIS for UNIX (Ubuntu Server LTS for x86-64 Containers) 2022.1.2 (Build "
            "574_0_22161U) Tue Jan 24 2023"
        )
    )
    assert "2022.1.2|2022|1" == out(
        run,
        (
            'write $SYSTEM.Version.GetNumber(),"|",$system.version.GetMajor(),"|"'
            ",##class(%SYSTEM.Version).GetMinor()"
        ),
    )


def test_security_global_needs_all_role(run: Runner, host: SimHost) -> None:
    """Without %All, ^SECURITY access raises <PROTECT>."""
    host.update_settings(os_user_roles=("%Developer",))
    assert out(run, 'write $d(^SECURITY("x"))').splitlines()[-1].startswith("<PROTECT>")


def test_indirection_and_name(run: Runner) -> None:
    """@ in expressions and as SET/KILL targets; $NAME of an extended reference."""
    lines = [
        'set r="^I(1)",@r=5,@r@("s")=6 write ^I(1),^I(1,"s"),$d(@("^I"))',
        "kill @r write $d(^I)",
        'write !,$name(^|"^^:ds:IRISSECURITY"|SECURITY("OAuth2"))_".gbl"',
    ]
    assert '5610\n0\n^|"^^:ds:IRISSECURITY"|SECURITY("OAuth2").gbl' == out(run, *lines)


def test_merge_and_zwrite(run: Runner) -> None:
    """MERGE copies a subtree; ZWRITE prints nodes with quoted values and $lb()."""
    lines = ['set ^A(1)="x",^A(1,2)=$lb("y",3) merge ^B=^A zwrite ^B']
    assert '^B(1)="x"\n^B(1,2)=$lb("y",3)' == out(run, *lines)


def test_terminate_sets_the_exit_status(run: Runner) -> None:
    """Terminate(,N) ends the process with exit status N; later lines do not run."""
    result = run("if 1 do ##class(%SYSTEM.Process).Terminate(, 3)", 'write "after"')
    assert (3, False) == (result.status, "after" in result.stdout)


def test_routine_argument_runs_in_application_mode(run: Runner, host: SimHost) -> None:
    """A routine argument runs without prompts and the session ends."""
    result = run(routine="##class(%SYSTEM.Process).Terminate(,4)")
    assert (4, False) == (result.status, "%SYS>" in result.stdout)


def test_export_of_security_without_all_role_fails(run: Runner, host: SimHost) -> None:
    """Checklist 15: Export of ^SECURITY without %All returns a <PROTECT> error status."""
    host.set("SECURITY", ("OAuth2", "x"), "1")
    host.update_settings(os_user_roles=("%Developer",))
    line = (
        'set sc=$system.OBJ.Export("SECURITY.gbl","/nonexistent/x.xml","-d")'
        " write $system.Status.GetErrorText(sc)"
    )
    assert out(run, line).startswith("ERROR #5002: ObjectScript error: <PROTECT>")


def test_unsupported_command_is_reported(run: Runner) -> None:
    """READ (not simulated) fails with <SYNTAX> and names itself on stderr."""
    result = run("read x")
    assert ("<SYNTAX>", True) == (
        body(result).splitlines()[-1],
        "unsupported: command read" in result.stderr,
    )


def test_empty_line_only_prints_a_prompt(run: Runner) -> None:
    """An empty command line is accepted silently."""
    result = run("", "write 1")
    assert ("1", "") == (body(result), result.stderr)


def test_display_error_writes_the_text(run: Runner) -> None:
    """$SYSTEM.Status.DisplayError prints ERROR #code: text."""
    line = 'do $system.Status.DisplayError($system.Status.Error(5001,"bad thing"))'
    assert "ERROR #5001: bad thing" == out(run, line)


def test_horolog_and_timestamp_shapes(run: Runner) -> None:
    """$H is days,seconds; $ZTS is days,seconds.fraction; $ZV comes from the settings."""
    line = 'write $h?1.N1","1.N,!,$zts?1.N1","1.N.E,!,$p($zv," ",1)'
    assert "1\n1\nIRIS" == out(run, line)


def test_xecute_zstrip_and_maxnumber(run: Runner) -> None:
    """XECUTE runs code, $ZSTRIP strips by mask, huge numbers raise <MAXNUMBER>."""
    lines = [
        'xecute "write 42"',
        'write !,$zstrip("  a  b ","<>W"),"|",$zstrip("a1b2","*N"),"|",$zstrip("a  b","=W")',
        "write !,1E400",
    ]
    assert "42\na  b|ab|a b\nwrite !,1E400\n^\n<MAXNUMBER>" == out(run, *lines)


def test_odd_lines_never_crash_the_interpreter(run: Runner) -> None:
    """A grab-bag of edge cases produces IRIS errors or output, never an internal error."""
    lines = (Path(__file__).parent / "data" / "robustness.txt").read_text("utf-8").splitlines()
    result = run(*lines, "halt")
    assert (0, False) == (result.status, "internal error" in result.stderr)

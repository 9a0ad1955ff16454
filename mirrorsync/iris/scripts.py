"""ObjectScript sent to ``iris session``, built by pure functions.

Every script is ONE terminal line (so no prompt can land inside a frame) that prints its results
between sentinel lines (see ``frames``). Sentinels are assembled at run time from two literals, so
the source line that IRIS echoes in an error message never looks like a sentinel.

Rules these scripts follow (facts file, appendix): no ``$$$`` macros (not available at the
terminal prompt), Base64 with CR/LF stripped (whether Base64Encode wraps lines by default is not
something we rely on), every value converted to UTF-8 first so characters above 255 survive.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence


def new_token() -> str:
    """A fresh random token that ties a frame to one call."""
    return secrets.token_hex(8)


def quote(text: str) -> str:
    """An ObjectScript string literal for ``text`` (double quotes doubled).

    Control characters cannot be typed on a terminal line: refuse them instead of sending a
    line IRIS would split or misread.
    """
    if any(ord(ch) < 32 for ch in text):
        raise ValueError(f"control character in ObjectScript literal {text!r}")
    return '"' + text.replace('"', '""') + '"'


def _b64(expression: str) -> str:
    """Expression: Base64 of the UTF-8 form of ``expression``, one line."""
    return (
        "$translate($system.Encryption.Base64Encode("
        f'$zconvert({expression},"O","UTF8")),$char(13,10))'
    )


def _begin(token: str) -> str:
    return f'write !,"<<"_"MS:{token}:BEGIN>>",!'


def _end_ok(token: str) -> str:
    return f'write "<<"_"MS:{token}:END:OK>>",!'


def _end_err(token: str, text_expression: str) -> str:
    return f'write !,"<<"_"MS:{token}:END:ERR ",{_b64(text_expression)},">>",!'


def _framed(token: str, body: str) -> str:
    """Wrap ``body`` in BEGIN/END sentinels; any error ends the frame with its text."""
    return (
        f" {_begin(token)} try {{ {body} {_end_ok(token)} }} "
        f"catch ex {{ {_end_err(token, 'ex.DisplayString()')} }}"
    )


def _status_checked(token: str, call: str) -> str:
    """Run ``call`` (returns %Status) and end the frame with OK or the status text."""
    return (
        f" {_begin(token)} try {{ set sc={call} "
        f"if $SYSTEM.Status.IsOK(sc) {{ {_end_ok(token)} }} "
        f"else {{ {_end_err(token, '$SYSTEM.Status.GetErrorText(sc)')} }} }} "
        f"catch ex {{ {_end_err(token, 'ex.DisplayString()')} }}"
    )


def _name_list(names: Iterable[str]) -> str:
    listed = ",".join(quote(name) for name in names)
    if not listed:
        raise ValueError("empty global list")
    return listed


def probe(token: str) -> str:
    """Version, $ZV, namespace and mirror role (facts §5, §6.2)."""
    body = (
        'write "VERSION ",$SYSTEM.Version.GetNumber(),! '
        f'write "ZV ",{_b64("$zversion")},! '
        'write "NAMESPACE ",$namespace,! '
        'write "MIRROR ",$SYSTEM.Mirror.IsMember(),"|",$SYSTEM.Mirror.IsPrimary(),"|",'
        '$SYSTEM.Mirror.IsBackup(),"|",$SYSTEM.Mirror.IsAsyncMember(),"|",'
        '$SYSTEM.Mirror.GetMemberType(),"|",$SYSTEM.Mirror.GetStatus(),"|",'
        "$SYSTEM.Mirror.MirrorName(),!"
    )
    return _framed(token, body)


def discover(token: str, names: Sequence[str]) -> str:
    """$DATA of each configured global, and every global whose name looks like OAuth2.

    ``^$GLOBAL`` is walked from the start because whether its subscripts carry the caret is not
    confirmed (facts: none); the parser strips an optional caret.
    """
    body = (
        f'for g={_name_list(names)} {{ write "D ",g," ",$data(@("^"_g)),! }} '
        'set n="" for { set n=$order(^$GLOBAL(n)) quit:n=""  '
        'if $zconvert(n,"U")["OAUTH2" { write "G ",n,! } }'
    )
    return _framed(token, body)


def readout(token: str, names: Sequence[str]) -> str:
    """Every node of the named globals: ``N <global> <depth> <b64 sub>... <b64 value>``.

    Walking with $QUERY and printing each subscript through $QSUBSCRIPT means Python never has
    to parse an ObjectScript reference, and Base64 of UTF-8 keeps every byte and character.
    """
    body = (
        f"for g={_name_list(names)} {{ "
        'set ref="^"_g '
        f'if $data(@ref)#2 {{ write "N ",g," 0 ",{_b64("@ref")},! }} '
        'for { set ref=$query(@ref) quit:ref=""  '
        'write "N ",g," ",$qlength(ref) '
        f'for i=1:1:$qlength(ref) {{ write " ",{_b64("$qsubscript(ref,i)")} }} '
        f'write " ",{_b64("@ref")},! }} }}'
    )
    return _framed(token, body)


def export(token: str, names: Sequence[str], path: str) -> str:
    """$SYSTEM.OBJ.Export of the globals to ``path``: no display, no time stamps (/diffexport)."""
    if not names:
        raise ValueError("nothing to export")
    items = ",".join(f"{name}.GBL" for name in names)
    return _status_checked(
        token, f'$SYSTEM.OBJ.Export({quote(items)},{quote(path)},"-d/diffexport")'
    )


def _replace_in_transaction(token: str, kill_refs: Sequence[str], path: str) -> str:
    """TSTART, kill ``kill_refs``, Load ``path``, TCOMMIT; roll back on an error status or an
    exception. Shared by the classic and the ^SECURITY import."""
    kills = f"kill {','.join(kill_refs)} " if kill_refs else ""
    return (
        f' {_begin(token)} try {{ tstart  {kills}set sc=$SYSTEM.OBJ.Load({quote(path)},"-d") '
        f"if $SYSTEM.Status.IsOK(sc) {{ tcommit  {_end_ok(token)} }} "
        f"else {{ trollback  {_end_err(token, '$SYSTEM.Status.GetErrorText(sc)')} }} }} "
        f"catch ex {{ if $tlevel {{ trollback }} {_end_err(token, 'ex.DisplayString()')} }}"
    )


def _kill_in_transaction(token: str, kill_refs: Sequence[str]) -> str:
    """Kill ``kill_refs`` in one transaction (restoring a member that held none of them)."""
    if not kill_refs:
        raise ValueError("nothing to kill")
    return (
        f" {_begin(token)} try {{ tstart  kill {','.join(kill_refs)} tcommit  {_end_ok(token)} }} "
        f"catch ex {{ if $tlevel {{ trollback }} {_end_err(token, 'ex.DisplayString()')} }}"
    )


def load(token: str, path: str, kill_names: Sequence[str] = ()) -> str:
    """Replace globals with the content of ``path``, inside one transaction.

    ``kill_names`` (every item-set global the member holds) are killed first, then
    $SYSTEM.OBJ.Load reads the file. Load kills each global it imports by default (facts §3),
    but /mergeglobal can be made a namespace default: the explicit kill makes the result the
    same either way. An error status or an exception rolls the transaction back. Whether a real
    IRIS rolls back what Load wrote is not confirmed (issue 4): mirrorsync checks the member by
    read-back afterwards either way and restores its snapshot if needed.
    """
    return _replace_in_transaction(token, [f"^{name}" for name in kill_names], path)


def kill_globals(token: str, names: Sequence[str]) -> str:
    """Kill whole globals, in one transaction (restoring a member that held none of them)."""
    return _kill_in_transaction(token, [f"^{name}" for name in names])


def session_argv(
    iris_command: str, instance: str, namespace: str, *, sudo_user: str | None = None
) -> tuple[str, ...]:
    """The remote command: ``iris session INSTANCE -U NAMESPACE`` (each part quoted by ssh).

    With ``sudo_user`` (the instance owner) it runs as ``sudo -n -u USER -- iris ...``: ``-n``
    makes sudo fail at once instead of waiting for a password nobody will type.
    """
    session = (iris_command, "session", instance, "-U", namespace)
    if sudo_user is None:
        return session
    return ("sudo", "-n", "-u", sudo_user, "--", *session)


def session_input(lines: Sequence[str], credentials: tuple[str, str] | None) -> bytes:
    """What goes to stdin: the login answers (if OS authentication is off), the lines, halt."""
    head = list(credentials) if credentials is not None else []
    return ("\n".join([*head, *lines, "halt"]) + "\n").encode("utf-8")


# -- IRIS 2025.2+ (issue 6): OAuth2 under ^SECURITY in the IRISSECURITY database (facts §6.2-6.3) --

SECURITY_GLOBAL = '^|"^^:ds:IRISSECURITY"|SECURITY'
"""The extended reference of the official recipe (facts §1.3, §6.3): the database by name."""


def _security(subscript_expression: str) -> str:
    return f"{SECURITY_GLOBAL}({subscript_expression})"


def security_discover(token: str) -> str:
    """Whether ``^SECURITY`` is readable (direct access needs %All), and its OAuth2 subscripts.

    ``ACCESS 1`` or ``ACCESS 0 <b64 error>``, then ``S <b64 subscript> <$data>`` for every
    first-level subscript that starts with ``OAuth2`` (they collate together after "OAuth2").
    Nothing else under ^SECURITY is read.
    """
    body = (
        f"set ok=1 try {{ set d=$data({SECURITY_GLOBAL}) }} "
        f'catch ex {{ set ok=0 write "ACCESS 0 ",{_b64("ex.DisplayString()")},! }} '
        'if ok { write "ACCESS 1",! set s="OAuth2" '
        f'if $data({_security("s")}) {{ write "S ",{_b64("s")}," ",$data({_security("s")}),! }} '
        f'for {{ set s=$order({_security("s")}) quit:s=""  '
        'quit:$extract(s,1,6)\'="OAuth2"  '
        f'write "S ",{_b64("s")}," ",$data({_security("s")}),! }} }}'
    )
    return _framed(token, body)


def security_readout(token: str, subscripts: Sequence[str]) -> str:
    """Every node under ``^SECURITY(s)`` for each ``s``: ``N <s> <depth> <b64 sub>... <b64>``.

    The same line format as ``readout`` with the first-level subscript in the place of the
    global name, so ``results.parse_readout`` reads it; the walk stops at the subtree's end.
    """
    body = (
        f"for s={_name_list(subscripts)} {{ "
        f"set ref=$name({_security('s')}) "
        f'if $data(@ref)#2 {{ write "N ",s," 0 ",{_b64("@ref")},! }} '
        'for { set ref=$query(@ref) quit:ref=""  quit:$qsubscript(ref,1)\'=s  '
        'write "N ",s," ",$qlength(ref)-1 '
        f'for i=2:1:$qlength(ref) {{ write " ",{_b64("$qsubscript(ref,i)")} }} '
        f'write " ",{_b64("@ref")},! }} }}'
    )
    return _framed(token, body)


def security_export(token: str, subscripts: Sequence[str], path: str) -> str:
    """$SYSTEM.OBJ.Export of the ``^SECURITY(s)`` subtrees, as in the official recipe (§6.3)."""
    if not subscripts:
        raise ValueError("nothing to export")
    items = ",".join(f"{_security(quote(s))}.gbl" for s in subscripts)
    return _status_checked(
        token, f'$SYSTEM.OBJ.Export({quote(items)},{quote(path)},"-d/diffexport")'
    )


def security_load(token: str, path: str, kill_subscripts: Sequence[str] = ()) -> str:
    """Replace ``^SECURITY(s)`` subtrees with a ^SECURITY export, in one transaction.

    Like ``load``: the named OAuth2 subtrees the member holds are killed first (only
    ``^SECURITY(s)`` for those ``s``; users, roles and the rest are never touched), then Load.
    """
    return _replace_in_transaction(token, [_security(quote(s)) for s in kill_subscripts], path)


def security_kill(token: str, subscripts: Sequence[str]) -> str:
    """Kill the named ``^SECURITY(s)`` OAuth2 subtrees in one transaction (and nothing else)."""
    return _kill_in_transaction(token, [_security(quote(s)) for s in subscripts])


# -- Where OAuth2 globals live, and `mirrorsync doctor` (issue 6) ---------------------------------

SCRATCH_GLOBAL = "mirrorsync.doctor"
"""The only global doctor writes; created and killed by ``doctor_scratch`` itself."""


def global_locations(token: str, names: Sequence[str]) -> str:
    """Where each global of the current namespace lives and whether that database is mirrored.

    ``L <global> <b64 destination> <flag> <b64 mirror db name>`` per global, where the
    destination is ``%SYS.Namespace.GetGlobalDest`` (``system^directory``, system empty when
    local; CONFIRMED in Caché sources, ASSUMED unchanged in IRIS) and the flag is ``1``/``0``
    (``SYS.Database.Mirrored``), ``R`` (a remote database: not checked), ``X`` (no destination)
    or ``N`` (the directory does not open as a database).
    """
    body = (
        f"for g={_name_list(names)} {{ "
        'set d=##class(%SYS.Namespace).GetGlobalDest($namespace,"^"_g),m="X",n="" '
        'if d\'="" { set p=$length(d,"^"),dir=$piece(d,"^",p),'
        'sys=$translate($piece(d,"^",1,p-1),"^") '
        'if sys\'="" { set m="R" } '
        "else { set db=##class(SYS.Database).%OpenId(dir) "
        'if $isobject(db) { set m=+db.Mirrored,n=db.MirrorDBName } else { set m="N" } } } '
        f'write "L ",g," ",{_b64("d")}," ",m," ",{_b64("n")},! }}'
    )
    return _framed(token, body)


def whoami(token: str) -> str:
    """The IRIS user and its roles: ``USER <b64>`` and ``ROLES <b64 comma list>``."""
    body = f'write "USER ",{_b64("$username")},! write "ROLES ",{_b64("$roles")},!'
    return _framed(token, body)


def doctor_scratch(token: str, path: str) -> str:
    """Probe Export/Load semantics on ``^mirrorsync.doctor`` only, and kill it in every case.

    Sets a text node and a node with a binary subscript and a ``$LIST`` value, exports the
    global to ``path`` (same qualifiers as ``export``), adds an extra node and loads the file
    (same qualifiers as ``load``): ``KILL 1`` when the extra node is gone. ``ROUNDTRIP 1`` when
    the binary node survived. Then: kill, set a ``pre`` node, TSTART, Load, TROLLBACK:
    ``ROLLBACK 1`` when the loaded nodes are gone and ``pre`` is back. The global is killed at
    the end and in the CATCH block (after a TROLLBACK), so nothing of it is left behind.
    """
    g = f"^{SCRATCH_GLOBAL}"
    binary = f'{g}("bin",$char(1,2))'
    value = '$listbuild("a",1,$char(0))'
    load_call = f'$SYSTEM.OBJ.Load({quote(path)},"-d")'
    body = (
        f'kill {g} set {g}("keep")="v",{binary}={value} '
        f"set sc=$SYSTEM.OBJ.Export({quote(SCRATCH_GLOBAL + '.GBL')},{quote(path)},"
        '"-d/diffexport") '
        "if '$SYSTEM.Status.IsOK(sc) { "
        f'write "EXPORT 0 ",{_b64("$SYSTEM.Status.GetErrorText(sc)")},! }} '
        'else { write "EXPORT 1",! '
        f'set {g}("extra")=1,sc={load_call} '
        'write "LOAD ",$SYSTEM.Status.IsOK(sc)," ",'
        f"{_b64('$SYSTEM.Status.GetErrorText(sc)')},! "
        f'write "KILL ",\'$data({g}("extra")),! '
        f'write "ROUNDTRIP ",($get({binary})={value}),! '
        f'kill {g} set {g}("pre")=1 '
        f"tstart  set sc={load_call} trollback  "
        'write "TXLOAD ",$SYSTEM.Status.IsOK(sc),! '
        f'write "ROLLBACK ",((\'$data({g}("keep")))&&($get({g}("pre"))=1)),! }} '
        f"kill {g}"
    )
    return (
        f" {_begin(token)} try {{ {body} {_end_ok(token)} }} "
        f"catch ex {{ if $tlevel {{ trollback }} kill {g} "
        f"{_end_err(token, 'ex.DisplayString()')} }}"
    )

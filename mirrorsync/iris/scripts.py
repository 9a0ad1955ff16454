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

SENTINEL_PREFIX = "<<MS:"


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


def load(token: str, path: str, kill_names: Sequence[str] = ()) -> str:
    """$SYSTEM.OBJ.Load of ``path`` into the current namespace.

    Load kills each global in the file before setting its nodes (facts §3). ``kill_names`` are
    item-set globals the primary does not have at all: the file cannot replace them, so they are
    killed explicitly, after a successful Load only.
    """
    call = f'$SYSTEM.OBJ.Load({quote(path)},"-d")'
    if not kill_names:
        return _status_checked(token, call)
    kills = ",".join(f"^{name}" for name in kill_names)
    return (
        f" {_begin(token)} try {{ set sc={call} "
        f"if $SYSTEM.Status.IsOK(sc) {{ kill {kills} {_end_ok(token)} }} "
        f"else {{ {_end_err(token, '$SYSTEM.Status.GetErrorText(sc)')} }} }} "
        f"catch ex {{ {_end_err(token, 'ex.DisplayString()')} }}"
    )


def session_argv(iris_command: str, instance: str, namespace: str) -> tuple[str, ...]:
    """The remote command: ``iris session INSTANCE -U NAMESPACE`` (each part quoted by ssh)."""
    return (iris_command, "session", instance, "-U", namespace)


def session_input(lines: Sequence[str], credentials: tuple[str, str] | None) -> bytes:
    """What goes to stdin: the login answers (if OS authentication is off), the lines, halt."""
    head = list(credentials) if credentials is not None else []
    return ("\n".join([*head, *lines, "halt"]) + "\n").encode("utf-8")

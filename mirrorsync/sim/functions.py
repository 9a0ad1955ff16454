"""ObjectScript ``$functions`` (intrinsic functions) and ``SET $LIST/$PIECE/$EXTRACT``."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, cast

from mirrorsync import listcodec
from mirrorsync.sim.collation import Num, boolean, canonical, to_decimal, to_num, truth
from mirrorsync.sim.errors import MError, ORef, Unsupported

if TYPE_CHECKING:
    import tree_sitter

    from mirrorsync.sim.interpreter import Interpreter, Ref

    Node = tree_sitter.Node


def _text(node: Node) -> str:
    raw = node.text
    return raw.decode("utf-8") if raw is not None else ""


_ALIASES = {
    "lb": "listbuild",
    "li": "list",
    "lg": "listget",
    "ll": "listlength",
    "lv": "listvalid",
    "ld": "listdata",
    "lf": "listfind",
    "lts": "listtostring",
    "lfs": "listfromstring",
    "q": "query",
    "o": "order",
    "d": "data",
    "g": "get",
    "na": "name",
    "ql": "qlength",
    "qs": "qsubscript",
    "p": "piece",
    "l": "length",
    "e": "extract",
    "f": "find",
    "tr": "translate",
    "c": "char",
    "a": "ascii",
    "zcvt": "zconvert",
    "s": "select",
    "i": "increment",
    "j": "justify",
    "r": "random",
    "re": "reverse",
    "zabs": "zabs",
}

# Real IRIS functions this simulator does not implement: <SYNTAX> + a stderr note, never <FUNCTION>.
_KNOWN_UNIMPLEMENTED = {
    "bit",
    "bitcount",
    "bitfind",
    "bitlogic",
    "listnext",
    "listsame",
    "listupdate",
    "ls",
    "lu",
    "double",
    "fnumber",
    "fn",
    "inumber",
    "in",
    "normalize",
    "number",
    "n",
    "text",
    "t",
    "view",
    "v",
    "zdate",
    "zd",
    "zdateh",
    "zdh",
    "zdatetime",
    "zdt",
    "zdatetimeh",
    "zdth",
    "ztime",
    "zt",
    "ztimeh",
    "zth",
    "zhex",
    "zh",
    "zcrc",
    "zwascii",
    "zwchar",
    "zlascii",
    "zlchar",
    "zsearch",
    "zboolean",
    "zb",
    "zpower",
    "zsqr",
    "zexp",
    "zln",
    "zlog",
    "zsin",
    "zcos",
    "ztan",
    "method",
    "property",
    "classmethod",
    "classname",
    "parameter",
    "stack",
    "wascii",
    "wchar",
    "wextract",
    "wfind",
    "wlength",
    "wreverse",
    "xecute",
    "x",
    "zobjclass",
    "zu",
    "zutil",
    "zf",
    "zname",
    "zposition",
    "zseek",
    "ztimestamp",
    "prefetchon",
    "prefetchoff",
    "sortbegin",
    "sortend",
    "sequence",
    "seq",
    "lock",
    "zstrip",
}


def _name_of(node: Node) -> str:
    """Lower-case function name without ``$`` (``$LiSt(`` -> ``list``)."""
    source = _text(node)
    return source[1 : source.index("(")].strip().lower() if "(" in source else source[1:].lower()


def _arg_nodes(node: Node) -> list[Node | None]:
    """Argument nodes (``method_arg`` unwrapped; ``dollar_func_pos`` kept), None when omitted."""
    from mirrorsync.sim.interpreter import _arg_expr, _args

    return [
        _arg_expr(arg) if arg is not None and arg.type == "method_arg" else arg
        for arg in _args(node)
    ]


class _Call:
    """Arguments of one call with lazy evaluation helpers."""

    def __init__(self, interp: Interpreter, node: Node, name: str) -> None:
        self.interp = interp
        self.node = node
        self.name = name
        key = ("fargs", node.id)
        cached = interp.memo.get(key)
        if cached is None:
            interp.memo[key] = cached = _arg_nodes(node)
        self.args = cast("list[Node | None]", cached)

    def count(self) -> int:
        return len(self.args)

    def need(self, low: int, high: int) -> None:
        if not low <= len(self.args) <= high:
            raise MError("SYNTAX")

    def value(self, index: int, default: str | None = None) -> str:
        """Evaluated argument ``index`` (0-based)."""
        if index >= len(self.args) or self.args[index] is None:
            if default is None:
                raise MError("SYNTAX")
            return default
        node = self.args[index]
        assert node is not None
        return self.interp.eval(node)

    def given(self, index: int) -> bool:
        return index < len(self.args) and self.args[index] is not None

    def ref(self, index: int) -> Ref:
        node = self.args[index] if index < len(self.args) else None
        if node is None:
            raise MError("SYNTAX")
        return self.interp.eval_ref(node)

    def position(self, index: int, length: int, default: int) -> int:
        """A position argument that may be ``*`` or ``*-n`` (relative to ``length``)."""
        if not self.given(index):
            return default
        node = self.args[index]
        assert node is not None
        if node.type == "dollar_func_pos":
            offset = 0
            exprs = [c for c in node.children if c.type == "expression"]
            if exprs:
                amount = int(to_decimal(self.interp.eval(exprs[0])))
                sign = "-" if any(c.type == "-" for c in node.children) else "+"
                offset = -amount if sign == "-" else amount
            return length + offset
        return int(to_decimal(self.interp.eval(node)))


_FUNCTION_CALL = re.compile(r"(?<![$\w])\$([A-Za-z][A-Za-z0-9]*)\(")


def check_unknown_functions(line: str) -> None:
    """The grammar rejects unknown ``$name(``; IRIS reports those as ``<FUNCTION>``."""
    for match in _FUNCTION_CALL.finditer(line):
        name = match.group(1).lower()
        known = _ALIASES.get(name, name)
        if known not in _FUNCTIONS and known not in _KNOWN_UNIMPLEMENTED and name != "system":
            raise MError("FUNCTION")


def call_function(interp: Interpreter, node: Node) -> str:
    """Evaluate a ``$function(...)`` node."""
    key = ("fname", node.id)
    cached = interp.memo.get(key)
    if cached is None:
        interp.memo[key] = cached = _name_of(node)
    name = cast(str, cached)
    canonical_name = _ALIASES.get(name, name)
    handler = _FUNCTIONS.get(canonical_name)
    if handler is None:
        if canonical_name in _KNOWN_UNIMPLEMENTED:
            raise Unsupported(f"function ${name}")
        raise MError("FUNCTION")
    return handler(_Call(interp, node, canonical_name))


# -- list helpers -------------------------------------------------------------------------------


def to_list_item(value: str) -> listcodec.ListItem:
    """How ``$LISTBUILD`` stores a value: numbers as numbers, everything else as a string."""
    if isinstance(value, Num):
        number = Decimal(value)
        if number == number.to_integral_value():
            return int(number)
        return number
    return str.__str__(value)


def from_list_item(item: listcodec.ListItem) -> str:
    """An element value as an ObjectScript value (numbers canonical)."""
    if isinstance(item, str):
        return item
    if isinstance(item, bool) or item is None:
        raise MError("NULL VALUE")
    if isinstance(item, int):
        return Num(str(item))
    if isinstance(item, float):
        return canonical(Decimal(repr(item)))
    return canonical(item)


def _items(value: str) -> list[str]:
    """Raw encoded items of a list value; ``<LIST>`` when it is not a list."""
    try:
        return listcodec.item_strings(value)
    except listcodec.ListFormatError as exc:
        raise MError("LIST") from exc


def _item_value(raw: str) -> listcodec.ListItem:
    return listcodec.decode(raw)[0]


def f_listbuild(call: _Call) -> str:
    items: list[listcodec.ListItem] = []
    if not call.args:
        return "\x01"
    for index in range(call.count()):
        items.append(None if not call.given(index) else to_list_item(call.value(index)))
    return listcodec.encode(items)


def f_list(call: _Call) -> str:
    call.need(1, 3)
    items = _items(call.value(0))
    length = len(items)
    if call.count() == 1:
        start = end = 1
    else:
        start = call.position(1, length, 1)
        end = call.position(2, length, start) if call.count() > 2 else start
    if call.count() <= 2:
        if start == -1:
            start = length
        if start < 1 or start > length:
            if start == 0 or start > length:
                raise MError("NULL VALUE")
            raise MError("RANGE")
        item = _item_value(items[start - 1])
        if item is None:
            raise MError("NULL VALUE")
        return from_list_item(item)
    start = max(start, 1)
    return "".join(items[start - 1 : end])


def f_listget(call: _Call) -> str:
    call.need(1, 3)
    items = _items(call.value(0))
    position = call.position(1, len(items), 1)
    default = call.value(2, "")
    if 1 <= position <= len(items):
        item = _item_value(items[position - 1])
        if item is not None:
            return from_list_item(item)
    return default


def f_listlength(call: _Call) -> str:
    call.need(1, 1)
    return Num(str(len(_items(call.value(0)))))


def f_listvalid(call: _Call) -> str:
    call.need(1, 1)
    return boolean(listcodec.is_valid(call.value(0)))


def f_listdata(call: _Call) -> str:
    call.need(1, 2)
    items = _items(call.value(0))
    position = call.position(1, len(items), 1)
    if 1 <= position <= len(items):
        return boolean(_item_value(items[position - 1]) is not None)
    return Num("0")


def f_listfind(call: _Call) -> str:
    call.need(2, 3)
    items = _items(call.value(0))
    wanted = str.__str__(call.value(1))
    start = int(to_decimal(call.value(2, "0")))
    for index in range(start, len(items)):
        item = _item_value(items[index])
        if item is not None and str.__str__(from_list_item(item)) == wanted:
            return Num(str(index + 1))
    return Num("0")


def f_listtostring(call: _Call) -> str:
    call.need(1, 3)
    delimiter = call.value(1, ",")
    values = []
    for raw in _items(call.value(0)):
        item = _item_value(raw)
        if item is None:
            raise MError("NULL VALUE")
        values.append(from_list_item(item))
    return delimiter.join(values)


def f_listfromstring(call: _Call) -> str:
    call.need(1, 2)
    value = call.value(0)
    delimiter = call.value(1, ",")
    if value == "":
        return ""
    return listcodec.encode(list(value.split(delimiter)))


# -- reference functions ------------------------------------------------------------------------


def f_data(call: _Call) -> str:
    call.need(1, 2)
    if call.count() > 1:
        raise Unsupported("$DATA with a target argument")
    return Num(str(call.interp.data(call.ref(0))))


def f_get(call: _Call) -> str:
    call.need(1, 2)
    value = call.interp.get(call.ref(0))
    if value is None:
        return call.value(1, "")
    return value


def _direction(call: _Call, index: int) -> bool:
    direction = int(to_decimal(call.value(index, "1")))
    if direction not in (1, -1):
        raise MError("FUNCTION")
    return direction == 1


def f_order(call: _Call) -> str:
    call.need(1, 3)
    if call.count() > 2:
        raise Unsupported("$ORDER with a target argument")
    return call.interp.order(call.ref(0), _direction(call, 1))


def f_query(call: _Call) -> str:
    call.need(1, 3)
    if call.count() > 2:
        raise Unsupported("$QUERY with a target argument")
    return call.interp.query(call.ref(0), _direction(call, 1))


def f_name(call: _Call) -> str:
    from mirrorsync.sim.interpreter import Ref, format_ref

    call.need(1, 2)
    ref = call.ref(0)
    if call.count() > 1:
        depth = int(to_decimal(call.value(1)))
        ref = Ref(ref.kind, ref.name, ref.subs[: max(depth, 0)], ref.env)
    return format_ref(ref)


def f_qlength(call: _Call) -> str:
    call.need(1, 1)
    return Num(str(len(call.interp.ref_from_string(call.value(0)).subs)))


def f_qsubscript(call: _Call) -> str:
    call.need(2, 2)
    ref = call.interp.ref_from_string(call.value(0))
    index = int(to_decimal(call.value(1)))
    if index == -1:
        return ref.env or ""
    if index == 0:
        return {"local": "", "global": "^", "ssvn": "^$"}[ref.kind] + ref.name
    if index > len(ref.subs):
        return ""
    if index < -1:
        raise MError("FUNCTION")
    return ref.subs[index - 1]


def f_increment(call: _Call) -> str:
    call.need(1, 2)
    ref = call.ref(0)
    step = to_decimal(call.value(1, "1"))
    current = call.interp.get(ref)
    result = canonical(to_decimal(current or "") + step)
    call.interp.store(ref, result)
    return result


# -- string functions ------------------------------------------------------------------------------


def f_piece(call: _Call) -> str:
    call.need(2, 4)
    value = call.value(0)
    delimiter = call.value(1)
    start = int(to_decimal(call.value(2, "1")))
    end = int(to_decimal(call.value(3))) if call.given(3) else start
    if delimiter == "":
        return ""
    pieces = value.split(delimiter)
    start = max(start, 1)
    if end < start:
        return ""
    return delimiter.join(pieces[start - 1 : end])


def f_length(call: _Call) -> str:
    call.need(1, 2)
    value = call.value(0)
    if call.count() == 1:
        return Num(str(len(value)))
    delimiter = call.value(1)
    if delimiter == "":
        return Num("0")
    return Num(str(value.count(delimiter) + 1))


def f_extract(call: _Call) -> str:
    call.need(1, 3)
    value = call.value(0)
    start = call.position(1, len(value), 1)
    end = call.position(2, len(value), start) if call.count() > 2 else start
    start = max(start, 1)
    if end < start:
        return ""
    return value[start - 1 : end]


def f_find(call: _Call) -> str:
    call.need(2, 3)
    value = call.value(0)
    wanted = call.value(1)
    start = max(int(to_decimal(call.value(2, "1"))), 1)
    if wanted == "":
        return Num(str(start))
    found = value.find(wanted, start - 1)
    return Num("0") if found < 0 else Num(str(found + len(wanted) + 1))


def f_translate(call: _Call) -> str:
    call.need(2, 3)
    value = call.value(0)
    source = call.value(1)
    target = call.value(2, "")
    table: dict[int, int | None] = {}
    for index, char in enumerate(source):
        if ord(char) in table:
            continue
        table[ord(char)] = ord(target[index]) if index < len(target) else None
    return value.translate(table)


def f_replace(call: _Call) -> str:
    call.need(3, 6)
    if call.count() > 3:
        raise Unsupported("$REPLACE with start/count/case arguments")
    old = call.value(1)
    value = call.value(0)
    if old == "":
        return value
    return value.replace(old, call.value(2))


def f_char(call: _Call) -> str:
    chars = []
    for index in range(call.count()):
        code = int(to_decimal(call.value(index)))
        if 0 <= code <= 0x10FFFF:
            chars.append(chr(code))
    return "".join(chars)


def f_ascii(call: _Call) -> str:
    call.need(1, 2)
    value = call.value(0)
    position = call.position(1, len(value), 1)
    if 1 <= position <= len(value):
        return Num(str(ord(value[position - 1])))
    return Num("-1")


def f_reverse(call: _Call) -> str:
    call.need(1, 1)
    return call.value(0)[::-1]


def f_zconvert(call: _Call) -> str:  # noqa: PLR0911 - one return per case reads like the IRIS reference table
    call.need(2, 3)
    value = call.value(0)
    mode = call.value(1).upper()
    if mode == "U":
        return value.upper()
    if mode == "L":
        return value.lower()
    if mode == "W":
        return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), value.lower())
    if mode in ("O", "I") and call.given(2):
        table = call.value(2).upper()
        if table in ("UTF8", "UTF-8"):
            if mode == "O":
                return value.encode("utf-8", "surrogatepass").decode("latin-1")
            try:
                return value.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                # ASSUMPTION: IRIS returns the input unchanged for bytes that are not UTF-8.
                return value
        if table == "HTML" and mode == "O":
            return (
                value.replace("&", "&amp;")
                .replace("<", "&lt;")
                .replace(">", "&gt;")
                .replace('"', "&quot;")
            )
        raise Unsupported(f"$ZCONVERT translation table {table}")
    raise Unsupported(f"$ZCONVERT mode {mode}")


def f_justify(call: _Call) -> str:
    call.need(2, 3)
    value = call.value(0)
    width = int(to_decimal(call.value(1)))
    if call.given(2):
        decimals = int(to_decimal(call.value(2)))
        number = to_decimal(value).quantize(Decimal(1).scaleb(-decimals))
        # $JUSTIFY with a third argument keeps the leading zero ("0.50").
        value = format(number, "f")
    return value.rjust(width)


def f_select(call: _Call) -> str:
    for child in call.node.children:
        if child.type == "dollar_arg_pair":
            exprs = [c for c in child.children if c.type == "expression"]
            if truth(call.interp.eval(exprs[0])):
                return call.interp.eval(exprs[1])
    raise MError("SELECT")


def f_case(call: _Call) -> str:
    children = call.node.children
    target_node = next(c for c in children if c.type == "expression")
    target = str.__str__(call.interp.eval(target_node))
    default: Node | None = None
    after_colon = False
    for child in children:
        if child.type == "dollar_arg_pair":
            exprs = [c for c in child.children if c.type == "expression"]
            if str.__str__(call.interp.eval(exprs[0])) == target:
                return call.interp.eval(exprs[1])
        elif child.type == ":":
            after_colon = True
        elif child.type == "expression" and after_colon:
            default = child
    if default is not None:
        return call.interp.eval(default)
    raise MError("ILLEGAL VALUE")


_STRIP_CLASSES = {
    "A": str.isalpha,
    "N": str.isdigit,
    "P": lambda c: c.isprintable() and not c.isalnum() and not c.isspace(),
    "C": lambda c: ord(c) < 32 or ord(c) == 127,
    "W": lambda c: c in " \t",
    "E": lambda c: True,
    "L": str.islower,
    "U": str.isupper,
}


def f_zstrip(call: _Call) -> str:
    """``$ZSTRIP(s, action[, remchar[, keepchar]])``: ``*`` all, ``<`` leading, ``>`` trailing,
    ``=`` collapse runs, then mask letters (A N P C W E L U)."""
    call.need(2, 4)
    value = call.value(0)
    action = call.value(1)
    extra = call.value(2, "")
    keep = call.value(3, "")
    positions = set()
    masks = []
    for char in action:
        if char in "*<>=":
            positions.add(char)
        elif char.upper() in _STRIP_CLASSES:
            masks.append(_STRIP_CLASSES[char.upper()])
        else:
            raise Unsupported(f"$ZSTRIP mask {char}")

    def strip(c: str) -> bool:
        return c not in keep and (c in extra or any(mask(c) for mask in masks))

    if "*" in positions:
        return "".join(c for c in value if not strip(c))
    if "<" in positions:
        while value and strip(value[0]):
            value = value[1:]
    if ">" in positions:
        while value and strip(value[-1]):
            value = value[:-1]
    if "=" in positions:
        collapsed: list[str] = []
        for c in value:
            if collapsed and strip(c) and collapsed[-1] == c:
                continue
            collapsed.append(c)
        value = "".join(collapsed)
    return value


def f_isobject(call: _Call) -> str:
    call.need(1, 1)
    return boolean(isinstance(call.value(0), ORef))


def f_isvalidnum(call: _Call) -> str:
    call.need(1, 4)
    value = call.value(0)
    return boolean(re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value) is not None)


def f_random(call: _Call) -> str:
    call.need(1, 1)
    limit = int(to_decimal(call.value(0)))
    if limit < 1:
        raise MError("FUNCTION")
    return Num(str(random.randrange(limit)))  # noqa: S311 - not for security


def f_zabs(call: _Call) -> str:
    call.need(1, 1)
    return canonical(abs(to_decimal(call.value(0))))


_FUNCTIONS: dict[str, Callable[[_Call], str]] = {
    "listbuild": f_listbuild,
    "list": f_list,
    "listget": f_listget,
    "listlength": f_listlength,
    "listvalid": f_listvalid,
    "listdata": f_listdata,
    "listfind": f_listfind,
    "listtostring": f_listtostring,
    "listfromstring": f_listfromstring,
    "data": f_data,
    "get": f_get,
    "order": f_order,
    "query": f_query,
    "name": f_name,
    "qlength": f_qlength,
    "qsubscript": f_qsubscript,
    "increment": f_increment,
    "piece": f_piece,
    "length": f_length,
    "extract": f_extract,
    "find": f_find,
    "translate": f_translate,
    "replace": f_replace,
    "char": f_char,
    "ascii": f_ascii,
    "reverse": f_reverse,
    "zconvert": f_zconvert,
    "justify": f_justify,
    "select": f_select,
    "case": f_case,
    "isobject": f_isobject,
    "isvalidnum": f_isvalidnum,
    "random": f_random,
    "zabs": f_zabs,
    "zstrip": f_zstrip,
}


# -- SET $LIST / $PIECE / $EXTRACT ----------------------------------------------------------------


def set_function(interp: Interpreter, node: Node, value: str) -> None:
    """``SET $LIST(x,n)=v``, ``SET $PIECE(x,d,n)=v``, ``SET $EXTRACT(x,n)=v``."""
    name = _ALIASES.get(_name_of(node), _name_of(node))
    call = _Call(interp, node, name)
    if name not in ("list", "piece", "extract") or not call.args or call.args[0] is None:
        raise Unsupported(f"SET ${name}(...)")
    target_node = call.args[0]
    assert target_node is not None
    ref = interp.eval_ref(target_node)
    current = interp.get(ref) or ""
    if name == "list":
        items = _items(current)
        position = call.position(1, len(items), 1)
        if call.count() > 2:
            raise Unsupported("SET $LIST with a range")
        if position == -1:
            position = len(items) + 1
        while len(items) < position:
            items.append("\x01")
        items[position - 1] = listcodec.encode([to_list_item(value)])
        interp.store(ref, "".join(items))
        return
    if name == "piece":
        delimiter = call.value(1)
        start = int(to_decimal(call.value(2, "1")))
        end = int(to_decimal(call.value(3))) if call.given(3) else start
        pieces = current.split(delimiter) if current != "" else [""]
        while len(pieces) < end:
            pieces.append("")
        start = max(start, 1)
        pieces[start - 1 : end] = [value]
        interp.store(ref, delimiter.join(pieces))
        return
    start = call.position(1, len(current), 1)
    end = call.position(2, len(current), start) if call.count() > 2 else start
    padded = current.ljust(end)
    interp.store(ref, padded[: max(start, 1) - 1] + value + padded[end:])


# -- pattern match --------------------------------------------------------------------------------

_PATTERN_CODES = {
    "N": r"[0-9]",
    "U": r"[A-Z]",
    "L": r"[a-z]",
    "A": r"[A-Za-z]",
    "P": r"[ !-/:-@\[-`{-~]",
    "C": r"[\x00-\x1f\x7f]",
    "E": r"[\s\S]",
}
_PATTERN_ATOM = re.compile(r'(\d*)(\.?)(\d*)(?:([A-Za-z]+)|"((?:[^"]|"")*)")')


def pattern_match(interp: Interpreter, value: str, operator: Node) -> str:
    """``value?pattern`` / ``value'?pattern`` for counts, code letters and string literals."""
    negate = _text(operator).startswith("'")
    pattern_node = next((c for c in operator.children if c.type == "pattern_expression"), None)
    if pattern_node is None:
        raise Unsupported("indirect pattern")
    source = _text(pattern_node)
    regex = []
    position = 0
    while position < len(source):
        match = _PATTERN_ATOM.match(source, position)
        if match is None or match.end() == position:
            raise Unsupported(f"pattern {source}")
        low, dot, high, codes, literal = match.groups()
        if dot:
            quantifier = "{" + (low or "0") + "," + high + "}"
        else:
            if not low:
                raise Unsupported(f"pattern {source}")
            quantifier = "{" + low + "}"
        if codes is not None:
            classes = []
            for code in codes.upper():
                if code not in _PATTERN_CODES:
                    raise Unsupported(f"pattern code {code}")
                classes.append(_PATTERN_CODES[code])
            unit = "(?:" + "|".join(classes) + ")"
        else:
            unit = "(?:" + re.escape(literal.replace('""', '"')) + ")"
        regex.append(unit + quantifier)
        position = match.end()
    matched = re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None
    return boolean(matched != negate)


__all__ = ["call_function", "from_list_item", "pattern_match", "set_function", "to_list_item"]

_ = to_num

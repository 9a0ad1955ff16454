"""ObjectScript values, canonical numbers, subscript collation and the sorted node tree.

Every IRIS value is a string; numbers are strings in canonical form. :class:`Num` marks a string
that came from arithmetic or a numeric literal, so ``$LISTBUILD`` can store it as a number (as IRIS
does: ``$LB(1)`` differs from ``$LB("1")``). Everything else about a ``Num`` is plain ``str``.
"""

from __future__ import annotations

import bisect
import decimal
import re
from collections.abc import Iterator
from decimal import Decimal

# ASSUMPTION (general M semantics): IRIS decimal arithmetic keeps about 18-19 significant digits.
_CONTEXT = decimal.Context(prec=19, rounding=decimal.ROUND_HALF_EVEN, Emax=999999, Emin=-999999)

# ASSUMPTION (general M/IRIS semantics): decimal numbers beyond about 1E145 raise <MAXNUMBER>.
_MAX_EXPONENT = 145

_NUMERIC_PREFIX = re.compile(r"[+-]*(\d*\.?\d*)(?:[eE]([+-]?\d+))?")
_CANONICAL = re.compile(r"0|-?[1-9]\d*(?:\.\d*[1-9])?|-?\.\d*[1-9]")


class Num(str):
    """A string known to be a canonical number (result of arithmetic or a numeric literal)."""

    __slots__ = ()


def to_decimal(value: str) -> Decimal:
    """Convert a string to a number the M way: the leading numeric prefix, else 0."""
    if isinstance(value, Num):
        return Decimal(value) if value else Decimal(0)
    match = _NUMERIC_PREFIX.match(value)
    if match is None:
        return Decimal(0)
    signs_end = match.start(1)
    negative = value[:signs_end].count("-") % 2 == 1
    mantissa = match.group(1)
    if mantissa in ("", "."):
        return Decimal(0)
    exponent = match.group(2)
    text = mantissa + (f"E{exponent}" if exponent is not None else "")
    try:
        number = _CONTEXT.create_decimal(text)
    except decimal.InvalidOperation:
        return Decimal(0)
    return -number if negative else number


def canonical(number: Decimal | int) -> Num:
    """Format a number canonically: no exponent, no trailing zeros, ``.5``, ``-1.25``, ``0``."""
    if isinstance(number, int):
        return Num(str(number))
    number = _CONTEXT.plus(number)
    if number.adjusted() > _MAX_EXPONENT:
        from mirrorsync.sim.errors import MError  # local: errors imports this module

        raise MError("MAXNUMBER")
    if number.is_zero():
        return Num("0")
    text = format(number.normalize(_CONTEXT), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text.startswith("0."):
        text = text[1:]
    elif text.startswith("-0."):
        text = "-" + text[2:]
    return Num(text)


def to_num(value: str) -> Num:
    """Unary ``+``: the canonical numeric value of a string."""
    if isinstance(value, Num):
        return value
    return canonical(to_decimal(value))


def is_canonical_number(value: str) -> bool:
    """Whether a string is a canonical number (it then collates as a number)."""
    if value in ("", "-", "-0"):
        return False
    return _CANONICAL.fullmatch(value) is not None


def truth(value: str) -> bool:
    """The boolean value of a string: its numeric value is non-zero."""
    if value == "1":
        return True
    return not to_decimal(value).is_zero()


def boolean(flag: bool) -> Num:
    """ObjectScript ``1``/``0``."""
    return Num("1") if flag else Num("0")


SubKey = tuple[int, Decimal | str]
"""Collation key of one subscript: numbers (0, value) sort before strings (1, text)."""

_HIGH: SubKey = (2, "")
"""Sorts after every real subscript key: used as an upper bound in bisects."""
_LOW: SubKey = (-1, "")


def sub_key(subscript: str) -> SubKey:
    """Collation key: canonical numbers first in numeric order, then strings by code point."""
    if is_canonical_number(subscript):
        return (0, Decimal(subscript))
    return (1, subscript)


def collates_after(left: str, right: str) -> bool:
    """The ``]]`` (sorts after) operator."""
    return sub_key(left) > sub_key(right)


class Tree:
    """Nodes of one global or local array: sorted keys for ``$ORDER``/``$QUERY`` plus a dict."""

    __slots__ = ("_keys", "_values")

    def __init__(self) -> None:
        """Start empty."""
        self._values: dict[tuple[str, ...], str] = {}
        self._keys: list[tuple[SubKey, ...]] = []

    def __len__(self) -> int:
        """Number of nodes holding a value."""
        return len(self._values)

    def copy(self) -> Tree:
        """An independent copy (for snapshots)."""
        other = Tree()
        other._values = dict(self._values)
        other._keys = list(self._keys)
        return other

    def get(self, subs: tuple[str, ...]) -> str | None:
        """Value of a node or None."""
        return self._values.get(subs)

    def set(self, subs: tuple[str, ...], value: str) -> None:
        """Set a node, keeping the key list sorted."""
        if subs not in self._values:
            bisect.insort(self._keys, tuple(sub_key(s) for s in subs))
        self._values[subs] = value

    def unset(self, subs: tuple[str, ...]) -> None:
        """Remove the value of one node, keeping its descendants (transaction undo)."""
        if subs in self._values:
            del self._values[subs]
            key = tuple(sub_key(s) for s in subs)
            index = bisect.bisect_left(self._keys, key)
            del self._keys[index]

    def _range(self, subs: tuple[str, ...]) -> tuple[int, int]:
        """Index range of the node ``subs`` and all its descendants in the key list."""
        prefix = tuple(sub_key(s) for s in subs)
        low = bisect.bisect_left(self._keys, prefix)
        high = bisect.bisect_left(self._keys, (*prefix, _HIGH))
        return low, high

    def kill(self, subs: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
        """Remove a node and its descendants; return what was removed (for undo logs)."""
        low, high = self._range(subs)
        removed: list[tuple[tuple[str, ...], str]] = []
        for key in self._keys[low:high]:
            node = _key_subs(key)
            removed.append((node, self._values.pop(node)))
        del self._keys[low:high]
        return removed

    def data(self, subs: tuple[str, ...]) -> int:
        """``$DATA``: 0, 1, 10 or 11."""
        low, high = self._range(subs)
        has_value = subs in self._values
        has_children = high - low > (1 if has_value else 0)
        return (1 if has_value else 0) + (10 if has_children else 0)

    def order(self, subs: tuple[str, ...], forward: bool = True) -> str:
        """``$ORDER``: the next (or previous) sibling subscript of the last subscript, or ``""``."""
        prefix = tuple(sub_key(s) for s in subs[:-1])
        last = subs[-1]
        depth = len(prefix)
        if forward:
            start: tuple[SubKey, ...] = (*prefix, _LOW if last == "" else sub_key(last), _HIGH)
            index = bisect.bisect_left(self._keys, start)
            if index < len(self._keys):
                key = self._keys[index]
                if key[:depth] == prefix and len(key) > depth:
                    return _sub_text(key[depth])
            return ""
        bound: tuple[SubKey, ...] = (*prefix, _HIGH if last == "" else sub_key(last))
        index = bisect.bisect_left(self._keys, bound) - 1
        if index >= 0:
            key = self._keys[index]
            if key[:depth] == prefix and len(key) > depth:
                return _sub_text(key[depth])
        return ""

    def query(self, subs: tuple[str, ...], forward: bool = True) -> tuple[str, ...] | None:
        """``$QUERY``: subscripts of the next (previous) node holding a value, or None."""
        key = tuple(sub_key(s) for s in subs)
        if forward:
            index = bisect.bisect_right(self._keys, key)
            if index < len(self._keys):
                return _key_subs(self._keys[index])
            return None
        index = bisect.bisect_left(self._keys, key) - 1
        if index >= 0:
            return _key_subs(self._keys[index])
        return None

    def items(self, subs: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
        """Nodes at or under ``subs`` in collation order."""
        low, high = self._range(subs)
        for key in self._keys[low:high]:
            node = _key_subs(key)
            yield node, self._values[node]


def _sub_text(key: SubKey) -> str:
    """Back from a collation key to the subscript string."""
    if key[0] == 0:
        return canonical(key[1] if isinstance(key[1], Decimal) else Decimal(key[1]))
    return str(key[1])


def _key_subs(key: tuple[SubKey, ...]) -> tuple[str, ...]:
    """Back from a full key to subscript strings."""
    return tuple(_sub_text(part) for part in key)

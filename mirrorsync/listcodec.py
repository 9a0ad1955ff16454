"""A codec for the IRIS ``$LIST`` binary format (facts §7).

IRIS strings are modelled as Python ``str``; a ``$LIST`` is a string whose characters are all in
the range 0-255 (one character per byte). :func:`encode` / :func:`decode` work on that form,
:func:`to_bytes` / :func:`from_bytes` convert to and from real bytes.

Item layout (CONFIRMED, facts §7):

* short header: ``len`` (1 byte, counts the 2 header bytes) + ``type`` + body, when ``len`` <= 255;
* medium header: ``0x00`` + ``len16`` (LE, = body length + 1) + ``type`` + body;
* long header: ``0x00 0x00 0x00`` + ``len32`` (LE, = body length + 1) + ``type`` + body;
* ``\\x01`` alone: an undefined element.

Types: 1 8-bit string, 2 UTF-16LE string, 4/5 positive/negative integer, 6/7 positive/negative
decimal (signed scale byte + mantissa), 8 IEEE double. A nested list is a string item whose body
happens to be a list; the codec never guesses, callers decode nested bodies explicitly.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from decimal import Decimal

ListItem = str | int | Decimal | float | None
"""One element: ``None`` is an undefined element (``$LB(,x)``)."""

_TYPE_ASCII = 1
_TYPE_UNICODE = 2
_TYPE_POSINT = 4
_TYPE_NEGINT = 5
_TYPE_POSDEC = 6
_TYPE_NEGDEC = 7
_TYPE_DOUBLE = 8
_TYPE_COMPACT_DOUBLE = 9


class ListFormatError(ValueError):
    """The string is not a valid ``$LIST``."""


def _int_body(value: int) -> tuple[int, bytes]:
    """Return (type, body) for an integer: minimal little-endian bytes.

    CONFIRMED (facts §7, [DOLLAR] writer): zero is the empty body (``\x02\x04``); a negative
    integer uses the fewest bytes n with ``value >= -(256**n)`` and stores ``value + 256**n``, so
    ``-1`` is the empty body ``\x02\x05`` and ``-256`` is ``\x03\x05\x00``.
    """
    if value >= 0:
        return _TYPE_POSINT, value.to_bytes((value.bit_length() + 7) // 8, "little")
    length = 0
    while value < -(1 << (8 * length)):
        length += 1
    return _TYPE_NEGINT, (value + (1 << (8 * length))).to_bytes(length, "little")


def _read_int(type_code: int, body: bytes) -> int:
    """Decode an integer body written by :func:`_int_body` (type 4 or 5)."""
    unsigned = int.from_bytes(body, "little")
    if type_code == _TYPE_POSINT:
        return unsigned
    return unsigned - (1 << (8 * len(body)))


def _decimal_body(value: Decimal) -> tuple[int, bytes]:
    """Return (type, body) for a non-integer decimal: signed scale byte + integer mantissa."""
    sign, digits, exponent = value.normalize().as_tuple()
    if not isinstance(exponent, int) or not -128 <= exponent <= 127:
        raise ListFormatError(f"cannot encode {value!r} in a $LIST")
    mantissa = int("".join(str(d) for d in digits) or "0")
    int_type, body = _int_body(-mantissa if sign else mantissa)
    scale = struct.pack("<b", exponent)
    return (_TYPE_NEGDEC if int_type == _TYPE_NEGINT else _TYPE_POSDEC), scale + body


def _string_body(value: str) -> tuple[int, bytes]:
    """Return (type, body): 8-bit when every char fits in a byte, else UTF-16LE."""
    if all(ord(ch) < 256 for ch in value):
        return _TYPE_ASCII, value.encode("latin-1")
    return _TYPE_UNICODE, value.encode("utf-16-le")


def _item_bytes(item: ListItem) -> bytes:
    """Encode one element with the shortest header that fits."""
    if item is None:
        return b"\x01"
    if isinstance(item, bool):
        raise ListFormatError("booleans are not list items; use 0 or 1")
    if isinstance(item, int) and not -(1 << 63) <= item < (1 << 64):
        # CONFIRMED ([DOLLAR] writer): integers beyond 64 bits are stored as strings.
        type_code, body = _string_body(str(item))
    elif isinstance(item, int):
        type_code, body = _int_body(item)
    elif isinstance(item, Decimal):
        if item == item.to_integral_value() and -(1 << 63) <= item < (1 << 64):
            type_code, body = _int_body(int(item))
        else:
            type_code, body = _decimal_body(item)
    elif isinstance(item, float):
        type_code, body = _TYPE_DOUBLE, struct.pack("<d", item)
    else:
        type_code, body = _string_body(item)
    short_len = len(body) + 2
    if short_len <= 255:
        return bytes((short_len, type_code)) + body
    if len(body) + 1 <= 0xFFFF:
        return b"\x00" + (len(body) + 1).to_bytes(2, "little") + bytes((type_code,)) + body
    return b"\x00\x00\x00" + (len(body) + 1).to_bytes(4, "little") + bytes((type_code,)) + body


def encode_bytes(items: Sequence[ListItem]) -> bytes:
    """Encode elements to the raw bytes of a ``$LIST``."""
    return b"".join(_item_bytes(item) for item in items)


def encode(items: Sequence[ListItem]) -> str:
    """Encode elements to an IRIS string (chars 0-255), like ``$LISTBUILD``."""
    return encode_bytes(items).decode("latin-1")


def _decode_body(type_code: int, body: bytes) -> ListItem:
    """Turn one item body into a Python value."""
    if type_code == _TYPE_ASCII:
        return body.decode("latin-1")
    if type_code == _TYPE_UNICODE:
        if len(body) % 2:
            raise ListFormatError("odd UTF-16 body length")
        return body.decode("utf-16-le")
    if type_code in (_TYPE_POSINT, _TYPE_NEGINT):
        return _read_int(type_code, body)
    if type_code in (_TYPE_POSDEC, _TYPE_NEGDEC):
        if not body:
            raise ListFormatError("decimal item without scale byte")
        scale = struct.unpack("<b", body[:1])[0]
        int_type = _TYPE_POSINT if type_code == _TYPE_POSDEC else _TYPE_NEGINT
        return Decimal(_read_int(int_type, body[1:])).scaleb(scale)
    if type_code == _TYPE_DOUBLE:
        if len(body) != 8:
            raise ListFormatError("double item must have 8 bytes")
        return float(struct.unpack("<d", body)[0])
    if type_code == _TYPE_COMPACT_DOUBLE:
        # INFERRED (facts §7): a compact double is a double with trailing zero bytes dropped.
        if len(body) > 8:
            raise ListFormatError("compact double longer than 8 bytes")
        return float(struct.unpack("<d", body.rjust(8, b"\x00"))[0])
    raise ListFormatError(f"unknown $LIST item type {type_code}")


def iter_items(data: bytes) -> list[tuple[int, int]]:
    """Return the (start, end) byte span of every item; raise ListFormatError if malformed."""
    spans: list[tuple[int, int]] = []
    pos = 0
    size = len(data)
    while pos < size:
        start = pos
        first = data[pos]
        if first == 0:
            if pos + 3 <= size and data[pos + 1 : pos + 3] != b"\x00\x00":
                body_len = int.from_bytes(data[pos + 1 : pos + 3], "little") - 1
                pos += 3
            elif pos + 7 <= size:
                body_len = int.from_bytes(data[pos + 3 : pos + 7], "little") - 1
                pos += 7
            else:
                raise ListFormatError("truncated long header")
            if body_len < 0 or pos + 1 + body_len > size:
                raise ListFormatError("item runs past the end")
            pos += 1 + body_len
        elif first == 1:
            pos += 1
        else:
            if first < 2 or pos + first > size:
                raise ListFormatError("item runs past the end")
            pos += first
        spans.append((start, pos))
    return spans


def _decode_item(data: bytes, start: int, end: int) -> ListItem:
    """Decode the item occupying ``data[start:end]``."""
    first = data[start]
    if first == 1 and end - start == 1:
        return None
    if first == 0:
        header = 3 if data[start + 1 : start + 3] != b"\x00\x00" else 7
        return _decode_body(data[start + header], data[start + header + 1 : end])
    return _decode_body(data[start + 1], data[start + 2 : end])


def decode_bytes(data: bytes) -> list[ListItem]:
    """Decode raw ``$LIST`` bytes into elements."""
    return [_decode_item(data, start, end) for start, end in iter_items(data)]


def to_bytes(value: str) -> bytes:
    """Convert an IRIS string holding a ``$LIST`` to bytes (every char must be < 256)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ListFormatError("a $LIST string holds only characters 0-255") from exc


def from_bytes(data: bytes) -> str:
    """Convert raw bytes to the IRIS string form."""
    return data.decode("latin-1")


def decode(value: str) -> list[ListItem]:
    """Decode an IRIS ``$LIST`` string into elements, like ``$LIST(x,1,*)``."""
    return decode_bytes(to_bytes(value))


def is_valid(value: str) -> bool:
    """Return whether ``value`` is a well-formed ``$LIST`` (``$LISTVALID``); ``""`` is valid."""
    try:
        data = to_bytes(value)
        for start, end in iter_items(data):
            _decode_item(data, start, end)
    except ListFormatError:
        return False
    return True


def decode_or_none(value: str) -> list[ListItem] | None:
    """Decode ``value`` as a ``$LIST``, or return None when it is not one (no guessing)."""
    try:
        return decode(value)
    except ListFormatError:
        return None


def item_strings(value: str) -> list[str]:
    """Return each item's raw encoded substring (used by ``$LIST`` set and ``$LIST(x,a,b)``)."""
    data = to_bytes(value)
    return [from_bytes(data[start:end]) for start, end in iter_items(data)]

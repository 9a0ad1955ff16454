"""The $LIST codec against the byte examples of facts §7 and property-based round trips."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorsync import listcodec


def test_single_string_matches_the_documented_bytes() -> None:
    """$lb("one") is length 5 (header included), type 1, then the bytes."""
    assert "\x05\x01one" == listcodec.encode(["one"])


def test_string_and_integer_match_the_documented_bytes() -> None:
    """$lb("list",2) is b'\\x06\\x01list\\x03\\x04\\x02'."""
    assert b"\x06\x01list\x03\x04\x02" == listcodec.encode_bytes(["list", 2])


def test_special_encodings() -> None:
    """Undefined is \\x01, "" is \\x02\\x01, zero is \\x02\\x04, -1 is \\x02\\x05."""
    assert "\x01\x02\x01\x02\x04\x02\x05" == listcodec.encode([None, "", 0, -1])


def test_negative_integer_uses_offset_form() -> None:
    """-256 fits in one byte: value + 256**1 = 0."""
    assert b"\x03\x05\x00" == listcodec.encode_bytes([-256])


def test_decimal_has_scale_byte_and_mantissa() -> None:
    """2.5 is type 6 with scale -1 (0xFF) and mantissa 25."""
    assert b"\x04\x06\xff\x19" == listcodec.encode_bytes([Decimal("2.5")])


def test_double_is_type_8() -> None:
    """A float is an 8-byte IEEE double."""
    assert b"\x0a\x08\x00\x00\x00\x00\x00\x00\xf8\x3f" == listcodec.encode_bytes([1.5])


def test_wide_characters_use_utf16() -> None:
    """A string with a char above 255 is type 2, UTF-16LE."""
    assert b"\x04\x02\xac\x20" == listcodec.encode_bytes(["\u20ac"])


def test_medium_header_for_long_items() -> None:
    """An item longer than 253 bytes uses 0x00 + 16-bit length (body + 1) + type."""
    encoded = listcodec.encode_bytes(["x" * 300])
    assert b"\x00" + (301).to_bytes(2, "little") + b"\x01" == encoded[:4]
    assert ["x" * 300] == listcodec.decode_bytes(encoded)


def test_long_header_for_huge_items() -> None:
    """An item longer than 65534 bytes uses three zero bytes + 32-bit length."""
    encoded = listcodec.encode_bytes(["y" * 70000])
    assert b"\x00\x00\x00" + (70001).to_bytes(4, "little") + b"\x01" == encoded[:8]
    assert ["y" * 70000] == listcodec.decode_bytes(encoded)


def test_nested_list_is_a_string_item() -> None:
    """A nested list decodes as a string whose content is itself a list."""
    inner = listcodec.encode(["https://a/cb", "https://b/cb"])
    outer = listcodec.decode(listcodec.encode(["", inner]))
    assert ["https://a/cb", "https://b/cb"] == listcodec.decode(str(outer[1]))


def test_invalid_list_is_rejected() -> None:
    """A length byte running past the end is not a valid list."""
    assert (False, True, True) == (
        listcodec.is_valid("\x09\x01ab"),
        listcodec.is_valid(""),
        listcodec.is_valid("\x01"),
    )
    with pytest.raises(listcodec.ListFormatError):
        listcodec.decode("\x09\x01ab")


def test_empty_string_is_the_empty_list() -> None:
    """$LISTLENGTH("")=0."""
    assert [] == listcodec.decode("")


_items = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12
    ),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _normal(item: listcodec.ListItem) -> object:
    """Decimals that are integers decode as int; compare by value."""
    if isinstance(item, Decimal) and item == item.to_integral_value():
        return int(item)
    return item


@given(st.lists(_items, max_size=12))
def test_round_trip(items: list[listcodec.ListItem]) -> None:
    """decode(encode(x)) gives back the same values, and the result is a valid list."""
    encoded = listcodec.encode(items)
    assert [_normal(i) for i in items] == [_normal(i) for i in listcodec.decode(encoded)]
    assert listcodec.is_valid(encoded)


@given(st.binary(max_size=64))
def test_bytes_helpers_round_trip(data: bytes) -> None:
    """to_bytes(from_bytes(b)) is the identity (one char per byte)."""
    assert data == listcodec.to_bytes(listcodec.from_bytes(data))


def test_negative_decimal_is_type_7() -> None:
    """-2.5 is type 7: scale -1 (0xFF), then the mantissa -25 in offset form (256 - 25)."""
    assert b"\x04\x07\xff\xe7" == listcodec.encode_bytes([Decimal("-2.5")])
    assert [Decimal("-2.5")] == listcodec.decode_bytes(b"\x04\x07\xff\xe7")


def test_multi_byte_negative_integer() -> None:
    """-257 needs two bytes: -257 + 65536 = 65279 = 0xFEFF little-endian."""
    assert b"\x04\x05\xff\xfe" == listcodec.encode_bytes([-257])


def test_decoder_accepts_a_medium_header_on_a_short_item() -> None:
    """A writer may use a longer header than needed; the body length still decides."""
    assert ["abc", 7] == listcodec.decode_bytes(b"\x00\x04\x00\x01abc\x03\x04\x07")


def test_undefined_and_empty_string_stay_distinct() -> None:
    """$LB(,"") holds an undefined element then an empty string, and they decode differently."""
    assert [None, ""] == listcodec.decode("\x01\x02\x01")


def test_decode_or_none_refuses_to_guess() -> None:
    """A plain string that is not a $LIST decodes to None instead of raising or guessing."""
    assert (None, ["a"]) == (
        listcodec.decode_or_none("https://x/cb"),
        listcodec.decode_or_none("\x03\x01a"),
    )


_nested: st.SearchStrategy[list[object]] = st.recursive(
    st.lists(st.one_of(st.none(), st.text(max_size=40), st.integers(-1000, 1000)), max_size=4),
    lambda inner: st.lists(st.one_of(inner, st.text(max_size=10)), max_size=4),
    max_leaves=20,
)


def _encode_nested(items: list[object]) -> str:
    """Encode, turning every inner Python list into a nested $LIST string item."""
    return listcodec.encode(
        [_encode_nested(i) if isinstance(i, list) else i for i in items]  # type: ignore[misc]
    )


def _decode_nested(value: str, shape: list[object]) -> list[object]:
    """Decode, descending into the items that ``shape`` says are nested lists."""
    decoded = listcodec.decode(value)
    return [
        _decode_nested(str(item), expected) if isinstance(expected, list) else item
        for item, expected in zip(decoded, shape, strict=True)
    ]


@given(_nested)
def test_nested_lists_round_trip(items: list[object]) -> None:
    """Nested lists (like RedirectURL inside a client record) survive encode then decode."""
    assert items == _decode_nested(_encode_nested(items), items)

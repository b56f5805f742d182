"""`canonical_json` is exactly `json.dumps(v, sort_keys=True, separators=(",", ":"))`.

A property test over arbitrary JSON values, plus the edges pinned one by one: where the native
writer deliberately refuses what `json.dumps` would write (non-str keys, lone surrogates, nesting
over 512 levels), the refusal is pinned here too.
"""

from __future__ import annotations

import collections
import decimal
import enum
import json
import math
import struct
import sys
from typing import Any, ClassVar

import pytest
import spp_dci_ibr as dci
from hypothesis import example, given, settings
from hypothesis import strategies as st
from spp_dci_ibr.exceptions import CanonicalJSONError, DCIError


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- strategies ---------------------------------------------------------------------------------

# Every code point except surrogates (which cannot be encoded, see the explicit tests below):
# astral planes, C0/C1 controls, DEL, noncharacters, private use.
CHARS = st.characters(codec=None, exclude_categories=("Cs",))
TEXT = st.text(CHARS)

EXPLICIT_FLOATS = [
    0.0,
    -0.0,
    1.0,
    10.0,
    0.1,
    1e16,
    1e15,
    9999999999999998.0,
    1234567890123456.0,
    1e-7,
    1e-4,
    1e-5,
    5e-324,
    562949953421312.25,  # an exact tie between two shortest forms: repr rounds half to even
    -5e-324,
    2.2250738585072014e-308,  # smallest normal
    2.225073858507201e-308,  # largest subnormal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1.5e300,
    123.456,
    2.0**53,
    2.0**53 + 2,
    0.30000000000000004,
]


def _float_from_bits(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    # subnormals and the smallest normals
    st.floats(min_value=-2.2250738585072014e-308, max_value=2.2250738585072014e-308),
    # uniform over the bit patterns: every exponent is equally likely
    st.integers(0, 2**64 - 1).map(_float_from_bits).filter(math.isfinite),
    st.sampled_from(EXPLICIT_FLOATS),
)

INTEGERS = st.one_of(
    st.integers(),
    st.integers(-(2**64) - 2, 2**64 + 2),
    st.integers(-(10**300), 10**300),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64]),
)

SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS, FLOATS, TEXT)

JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=6).map(tuple),
        st.dictionaries(TEXT, children, max_size=6),
    ),
    max_leaves=40,
)


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_json_values_match_json_dumps(value: Any) -> None:
    assert dci.canonical_json(value) == dumps(value)


@settings(max_examples=2000, deadline=None)
@given(TEXT)
@example("\x00\x1f\x7f\x80\x9f\u2028\u2029\ufeff\uffff\U0001f600\U0010ffff")
@example('"\\/\b\f\n\r\t')
def test_any_string_escapes_like_json_dumps(text: str) -> None:
    assert dci.canonical_json(text) == dumps(text)
    assert dci.canonical_json({text: text}) == dumps({text: text})


@settings(max_examples=2000, deadline=None)
@given(FLOATS)
def test_any_finite_float_prints_as_python_repr(value: float) -> None:
    assert dci.canonical_json(value) == dumps(value) == float.__repr__(value)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(TEXT, st.integers(), max_size=20))
def test_keys_sort_by_code_point(value: dict[str, int]) -> None:
    assert dci.canonical_json(value) == dumps(value)


# --- explicit cases -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e16, "1e+16"),
        (1e-7, "1e-07"),
        (-0.0, "-0.0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (10.0, "10.0"),
        (1234567890123456.0, "1234567890123456.0"),
        (0.0001, "0.0001"),
        (2**64, "18446744073709551616"),
        (-(2**100), "-1267650600228229401496703205376"),
        ("é€😀\x7f/", '"\\u00e9\\u20ac\\ud83d\\ude00\\u007f/"'),
        (
            {"😀": 1, "\uffff": 2, "é": 3, "z": 4},
            '{"z":4,"\\u00e9":3,"\\uffff":2,"\\ud83d\\ude00":1}',
        ),
        ((1, [2, (3,)]), "[1,[2,[3]]]"),
        ({}, "{}"),
        ([], "[]"),
        ("", '""'),
        (None, "null"),
        ([True, False], "[true,false]"),
    ],
)
def test_pinned_forms(value: Any, expected: str) -> None:
    assert dci.canonical_json(value) == expected == dumps(value)


def test_nan_and_infinity_are_written_like_json_dumps() -> None:
    value = [math.nan, math.inf, -math.inf, {"x": math.nan}]
    assert dci.canonical_json(value) == '[NaN,Infinity,-Infinity,{"x":NaN}]' == dumps(value)


def test_dict_list_and_str_subclasses() -> None:
    class MyDict(dict):  # type: ignore[type-arg]
        pass

    class MyList(list):  # type: ignore[type-arg]
        pass

    class MyStr(str):
        def __str__(self) -> str:
            return "overridden"

    value = {
        "o": collections.OrderedDict([("b", 1), ("a", 2)]),
        "m": MyDict(z=1, y=MyList([MyStr("s")])),
        "d": collections.defaultdict(list, {"k": []}),
        MyStr("key"): MyStr("v"),
    }
    expected = '{"d":{"k":[]},"key":"v","m":{"y":["s"],"z":1},"o":{"a":2,"b":1}}'
    assert dci.canonical_json(value) == expected == dumps(value)


class ItemsOverride(dict):  # type: ignore[type-arg]
    """json.dumps writes what items() gives, not what the dict stores."""

    def items(self) -> Any:
        return [(k + "!", v) for k, v in super().items()] + [("extra", 1)]


class ItemsGenerator(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        return ((k, [v, "via items"]) for k, v in dict.items(self))


class KeysIterGetitemOverride(dict):  # type: ignore[type-arg]
    """Overrides json.dumps never calls: the stored items are written."""

    def keys(self) -> Any:
        return ["bogus"]

    def __iter__(self) -> Any:
        return iter(["bogus"])

    def __getitem__(self, key: Any) -> Any:
        return "bogus"

    def values(self) -> Any:
        return ["bogus"]

    def __len__(self) -> int:
        return 0


class IterOverride(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter([*reversed(list(list.__iter__(self))), "via iter"])

    def __len__(self) -> int:
        return 0

    def __getitem__(self, i: Any) -> Any:
        return "bogus"


class TupleIterOverride(tuple):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter(["from", "iter"])


class ReprStr(str):
    def __str__(self) -> str:
        return "overridden"

    __repr__ = __str__

    def __hash__(self) -> int:
        return 1


class ReprFloat(float):
    def __repr__(self) -> str:
        return "1e999"

    __str__ = __repr__


WRAPPERS: dict[str, Any] = {
    "items": ItemsOverride,
    "items-generator": ItemsGenerator,
    "keys-iter-getitem": KeysIterGetitemOverride,
    "ordered": collections.OrderedDict,
    "default": lambda d: collections.defaultdict(list, d),
    "iter-list": IterOverride,
    "iter-tuple": TupleIterOverride,
}


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_container_subclasses_are_written_as_json_dumps_writes_them(wrapper: str) -> None:
    wrap = WRAPPERS[wrapper]
    sequence = wrapper in ("iter-list", "iter-tuple")
    inner = wrap([1, "x"] if sequence else {"b": 1, "a": [1.5, ReprFloat(2.5)]})
    for value in (
        inner,
        {"outer": inner, "z": [inner, (inner,)]},
        [inner, {"k": inner}],
        wrap([wrap([2])]) if sequence else wrap({"nested": wrap({"c": 3})}),
    ):
        assert dci.canonical_json(value) == dumps(value)
        envelope_text = dci.canonical_json({"header": {"h": value}, "message": {"m": value}})
        assert envelope_text == dumps({"header": {"h": value}, "message": {"m": value}})


def test_signatures_cover_what_json_dumps_writes_for_subclasses() -> None:
    key = dci.SigningKey.generate()
    header = {"sender_id": "s", "meta": ItemsOverride({"a": 1})}
    message = {"m": IterOverride([1, 2]), "t": TupleIterOverride((3,))}
    plain_header, plain_message = json.loads(dumps(header)), json.loads(dumps(message))
    sign = {"sender_id": "s", "key_id": "k", "created": 1000}
    field = dci.sign_envelope(plain_header, plain_message, key, **sign)
    assert dci.sign_envelope(header, message, key, **sign) == field  # Ed25519 is deterministic
    assert dci.verify_signature(field, header, message, key.public_pem(), now=1000)
    assert dci.check_signature(field, header, message, key.public_pem(), now=1000).outcome == (
        "valid"
    )


def test_str_int_and_float_subclass_overrides_never_reach_the_text() -> None:
    value = {ReprStr("k"): [ReprStr("v"), ReprFloat(0.5), Small(7)], "o": ReprStr("x")}
    assert dci.canonical_json(value) == dumps(value) == '{"k":["v",0.5,7],"o":"x"}'
    inside = ItemsOverride({"k": [ReprStr("v"), ReprFloat(0.5)]})
    assert dci.canonical_json(inside) == dumps(inside)


SUBCLASS_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(IterOverride),
        st.lists(children, max_size=4).map(TupleIterOverride),
        st.dictionaries(TEXT, children, max_size=4),
        st.dictionaries(TEXT, children, max_size=4).map(ItemsOverride),
        st.dictionaries(TEXT, children, max_size=4).map(ItemsGenerator),
        st.dictionaries(TEXT, children, max_size=4).map(KeysIterGetitemOverride),
        st.dictionaries(TEXT, children, max_size=4).map(collections.OrderedDict),
    ),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(SUBCLASS_VALUES)
def test_arbitrary_subclass_trees_match_json_dumps(value: Any) -> None:
    assert dci.canonical_json(value) == dumps(value)


class DuplicateItems(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        return [("a", 1), ("a", 2)]


class BadItems(dict):  # type: ignore[type-arg]
    def __init__(self, items: Any) -> None:
        super().__init__(stored=1)
        self._items = items

    def items(self) -> Any:
        return self._items


def test_items_overrides_json_dumps_would_not_write_as_json_are_refused() -> None:
    # Two members with one name: json.dumps writes both; a reader keeps one of them, so the
    # signed text would say something else than what is read. Refused.
    assert dumps(DuplicateItems(stored=1)) == '{"a":1,"a":2}'
    with pytest.raises(CanonicalJSONError, match="twice"):
        dci.canonical_json(DuplicateItems(stored=1))
    with pytest.raises(CanonicalJSONError, match="twice"):
        dci.canonical_json({"x": [DuplicateItems(stored=1)]})
    for bad in ([("a",)], [("a", 1, 2)], ["ab"], 42):
        with pytest.raises((ValueError, TypeError)):
            dumps(BadItems(bad))
        with pytest.raises(CanonicalJSONError):
            dci.canonical_json(BadItems(bad))
    # As for a plain dict, a non-str key is refused where json.dumps would stringify it.
    with pytest.raises(CanonicalJSONError, match="keys must be str"):
        dci.canonical_json(BadItems([(1, "x")]))


class Raising(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items() failed")


def test_an_items_override_that_raises_is_a_canonical_json_error() -> None:
    with pytest.raises(CanonicalJSONError, match="items"):
        dci.canonical_json({"a": Raising(stored=1)})


class Mutating(dict):  # type: ignore[type-arg]
    """items() empties the containers being written around it."""

    victims: ClassVar[list[Any]] = []

    def items(self) -> Any:
        for victim in self.victims:
            victim.clear()
        return [("m", ["z" * 100] * 100)]


def _mutating_tree() -> Any:
    parent: dict[str, Any] = {"a": {"x": "x" * 1000}, "b": None, "c": [{"y": "y" * 1000}]}
    siblings: list[Any] = [parent["a"], parent["c"], parent["c"][0]]
    parent["b"] = Mutating(stored=1)
    Mutating.victims = [parent, *siblings]
    return [parent, siblings, ("t", parent["c"])]


def test_an_items_override_that_mutates_its_parents_is_safe() -> None:
    # json.dumps snapshots every container before it writes it; so does canonical_json (a
    # freed object must never be read).
    expected = dumps(_mutating_tree())
    assert dci.canonical_json(_mutating_tree()) == expected


class EmptyItemsOverride(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        return [("never", "called")]


def test_an_empty_dict_subclass_is_written_empty_as_json_dumps_does() -> None:
    value = {"e": EmptyItemsOverride(), "l": IterOverride()}
    assert dci.canonical_json(value) == dumps(value) == '{"e":{},"l":["via iter"]}'


class Colour(enum.IntEnum):
    RED = 1
    BIG = 2**70
    NEG = -(2**70)


class Ratio(float):
    def __repr__(self) -> str:
        return "Ratio!"

    __str__ = __repr__


class Small(int):
    def __repr__(self) -> str:
        return "Small!"

    __str__ = __repr__


def test_int_and_float_subclasses_print_their_value() -> None:
    value = [Colour.RED, Colour.BIG, Colour.NEG, Ratio(0.5), Small(3), True]
    expected = "[1,1180591620717411303424,-1180591620717411303424,0.5,3,true]"
    assert dci.canonical_json(value) == expected == dumps(value)


def test_big_int_subclass_prints_its_value_not_its_str() -> None:
    # json.dumps writes int.__repr__(o) for every int; a subclass's __str__ must not leak into
    # the canonical text (it would not even be JSON, and would change what is signed).
    class Big(int):
        def __str__(self) -> str:
            return '0,"injected":1'

        __repr__ = __str__

    value = [Big(2**64), Big(-(2**70))]
    expected = "[18446744073709551616,-1180591620717411303424]"
    assert dumps(value) == expected
    assert dci.canonical_json(value) == expected


def _nested_lists(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _nested_dicts(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("nest", [_nested_lists, _nested_dicts])
def test_nesting_up_to_512_levels_is_written_deeper_is_refused(nest: Any) -> None:
    assert dci.canonical_json(nest(512)) == dumps(nest(512))
    for depth in (513, 2000):
        with pytest.raises(CanonicalJSONError, match="512") as info:
            dci.canonical_json(nest(depth))
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, DCIError)


def test_circular_reference_is_refused() -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(ValueError, match="Circular"):
        dumps(value)
    with pytest.raises(CanonicalJSONError):
        dci.canonical_json(value)


@pytest.mark.parametrize("value", [{1: "a"}, {"a": 1, 2: 3}, {None: 1}, {(1, 2): 1}, {b"k": 1}])
def test_non_str_keys_are_refused(value: Any) -> None:
    # json.dumps would stringify int/None keys; canonical JSON signs only string keys.
    with pytest.raises(CanonicalJSONError, match="keys must be str"):
        dci.canonical_json(value)
    with pytest.raises(CanonicalJSONError):
        dci.canonical_json([{"nested": value}])


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (b"bytes", "bytes"),
        (bytearray(b"x"), "bytearray"),
        (decimal.Decimal("1.5"), "Decimal"),
        (object(), "object"),
        (1j, "complex"),
        ({"a": [1, {2}]}, "set"),
    ],
)
def test_unsupported_types_are_refused_like_json_dumps(value: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=f"Object of type {type_name} is not JSON serializable"):
        dumps(value)
    with pytest.raises(CanonicalJSONError, match=f"Object of type {type_name} ") as info:
        dci.canonical_json(value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", {"\udc00": 1}, ["ok", "\ud83d"]])
def test_lone_surrogates_are_refused(value: Any) -> None:
    # json.dumps writes them as \udXXX escapes; they cannot come from UTF-8 JSON on the wire, and
    # the native core refuses them rather than guess.
    assert "\\ud" in dumps(value)
    with pytest.raises(CanonicalJSONError, match="surrogate") as info:
        dci.canonical_json(value)
    assert isinstance(info.value, DCIError)


def test_surrogate_pair_written_as_one_astral_character_is_fine() -> None:
    assert dci.canonical_json("\U0001f600") == '"\\ud83d\\ude00"' == dumps("\U0001f600")


def test_integers_beyond_the_str_digits_limit() -> None:
    huge = 10**5000
    with pytest.raises(ValueError):
        dumps(huge)
    with pytest.raises(CanonicalJSONError):
        dci.canonical_json(huge)
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert dci.canonical_json([huge, -huge]) == dumps([huge, -huge])
    finally:
        sys.set_int_max_str_digits(old)


def test_signing_envelope_shape_matches_json_dumps() -> None:
    header = {"sender_id": "s", "meta": {}, "total_count": 2**70, "is_msg_encrypted": False}
    message = {"names": ["Zoë", "Σωκράτης", "李小龍", "👩‍👩‍👧"], "ratio": 1e-7}
    envelope = {"header": header, "message": message}
    assert dci.canonical_json(envelope) == dumps(envelope)

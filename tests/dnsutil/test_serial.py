"""RFC 1982 serial arithmetic (SERIAL_BITS = 32): order, the undefined case, addition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.dnsutil import serial as rfc1982

SERIALS = st.integers(0, rfc1982.MAX_SERIAL)


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        (5, 5, 0),
        (4, 5, -1),
        (5, 4, 1),
        (0xFFFFFFF0, 3, -1),  # 3 comes after the wrap
        (4_000_000_000, 1_158_658_354, -1),  # the wrapped file serial of issue 13
        (0, 0x7FFFFFFF, -1),  # the farthest a serial can be ahead
        (0, 0x80000000, None),  # exactly 2**31 apart: undefined (RFC 1982 3.2)
        (0x80000000, 0, None),
        (1_000, 1_000 + 0x80000000, None),
        (0, 0x80000001, 1),  # just past half-way round: behind
    ],
)
def test_compare_follows_rfc1982(a: int, b: int, order: int | None) -> None:
    assert rfc1982.compare(a, b) == order


def test_undefined_is_neither_greater_nor_less() -> None:
    a, b = 7, 7 + rfc1982.HALF
    assert not rfc1982.gt(a, b) and not rfc1982.gt(b, a)
    assert not rfc1982.lt(a, b) and not rfc1982.lt(b, a)
    # New content after an undefined proposal moves on by one, as BIND would accept.
    assert rfc1982.forward(a, b) == 8


def test_add_wraps_and_refuses_undefined_increments() -> None:
    assert rfc1982.add(rfc1982.MAX_SERIAL, 1) == 0
    assert rfc1982.add(4_000_000_000, 0x7FFFFFFF) == (4_000_000_000 + 0x7FFFFFFF) % 2**32
    with pytest.raises(ValueError, match="increment"):
        rfc1982.add(1, rfc1982.HALF)
    with pytest.raises(ValueError, match="increment"):
        rfc1982.add(1, -1)
    with pytest.raises(ValueError, match="outside"):
        rfc1982.add(rfc1982.MODULUS, 1)
    with pytest.raises(ValueError, match="outside"):
        rfc1982.compare(-1, 0)


@pytest.mark.parametrize(
    ("current", "proposed", "published"),
    [
        (4_000_000_000, 1_158_658_354, 1_158_658_354),  # wrapped forward: taken
        (1_158_658_354, 4_000_000_000, 1_158_658_355),  # behind: current + 1
        (10, 10, 11),  # unchanged serial, new content
        (rfc1982.MAX_SERIAL, 5, 5),
        (rfc1982.MAX_SERIAL, rfc1982.MAX_SERIAL, 0),
    ],
)
def test_forward_always_moves_ahead(current: int, proposed: int, published: int) -> None:
    assert rfc1982.forward(current, proposed) == published
    assert rfc1982.gt(published, current)


@given(SERIALS, SERIALS)
def test_order_is_antisymmetric_and_forward_is_greater(a: int, b: int) -> None:
    order = rfc1982.compare(a, b)
    back = rfc1982.compare(b, a)
    assert order == (None if back is None else -back)
    assert (order is None) == ((b - a) % 2**32 == 2**31)
    assert rfc1982.gt(rfc1982.forward(a, b), a)


@given(SERIALS, st.integers(1, rfc1982.HALF - 1))
def test_adding_moves_ahead(s: int, n: int) -> None:
    assert rfc1982.gt(rfc1982.add(s, n), s)

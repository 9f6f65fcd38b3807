"""SOA serial number arithmetic (RFC 1982, with SERIAL_BITS = 32, as RFC 1035 uses).

A serial is an unsigned 32-bit number that wraps: after 4294967295 comes 0,
and 1158658354 is *greater* than 4000000000 (it is 1453625650 steps ahead).
Serials are therefore never compared with ``<``, ``>`` or ``max``: every
comparison of serials in mamori (zone transfer client and primary, published
zones, feed and dataset zones, DNSBL zones) goes through this module.

RFC 1982 section 3.2: for serials *a* and *b*, *a* < *b* when ``(b - a) mod
2**32`` is between 1 and ``2**31 - 1``; when it is exactly ``2**31`` the
comparison is **undefined**: neither is greater. BIND (``isc_serial_gt``)
treats that case as "not greater", and so do the functions here, so a serial
mamori publishes is always one a BIND secondary takes as newer.

Addition (RFC 1982 section 3.1) adds at most ``2**31 - 1``; larger
increments are undefined and refused.
"""

from __future__ import annotations

SERIAL_BITS = 32
MODULUS = 1 << SERIAL_BITS  # 4294967296
HALF = 1 << (SERIAL_BITS - 1)  # 2147483648: the undefined distance
MAX_SERIAL = MODULUS - 1
MAX_INCREMENT = HALF - 1


def check(serial: int) -> int:
    """*serial* itself; ValueError unless 0 <= serial <= 4294967295."""
    if not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"SOA serial {serial} is outside 0..{MAX_SERIAL}")
    return serial


def compare(a: int, b: int) -> int | None:
    """RFC 1982 order of serials *a* and *b*: -1 (a < b), 0 (equal), 1 (a > b),
    or None when it is undefined (they are exactly 2**31 apart).

    Raises ValueError for a number outside 0..4294967295.
    """
    d = (check(b) - check(a)) % MODULUS
    if d == 0:
        return 0
    if d == HALF:
        return None
    return -1 if d < HALF else 1


def gt(a: int, b: int) -> bool:
    """*a* is greater than *b* in serial order (False when undefined, as BIND)."""
    return compare(a, b) == 1


def lt(a: int, b: int) -> bool:
    """*a* is less than *b* in serial order (False when undefined)."""
    return compare(a, b) == -1


def add(serial: int, n: int) -> int:
    """*serial* + *n* modulo 2**32 (RFC 1982 3.1); ValueError unless 0 <= n <= 2**31 - 1."""
    if not 0 <= n <= MAX_INCREMENT:
        raise ValueError(f"a serial increment must be 0..{MAX_INCREMENT}, not {n}")
    return (check(serial) + n) % MODULUS


def forward(current: int, proposed: int) -> int:
    """The serial for new content after *current*: *proposed* when it is greater in
    serial order, otherwise *current* + 1 (an equal, lower or undefined one would
    leave secondaries on the old content). The result is always greater than
    *current*."""
    return proposed if gt(proposed, current) else add(current, 1)


__all__ = [
    "HALF",
    "MAX_SERIAL",
    "MODULUS",
    "add",
    "check",
    "compare",
    "forward",
    "gt",
    "lt",
]

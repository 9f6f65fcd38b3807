"""EDNS(0) padding (RFC 7830) with the block-length policy of RFC 8467.

Used by the encrypted transports only (DoT, DoH, DoQ), never on the UDP path:
an answer to a query that carried the Padding option is padded to a multiple of
468 octets, so that its length says less about the name asked for.
"""

from __future__ import annotations

import struct

from mamori.dnsutil.wire import TYPE_OPT, WireError, walk_records

OPT_PADDING = 12
RESPONSE_BLOCK = 468  # RFC 8467 section 4.1: responders pad to a multiple of 468
_H = struct.Struct("!H")


def _opt_options(msg: bytes) -> tuple[int, int] | None:
    """(start of the OPT rdata length field, end of the OPT record), or None."""
    _, refs = walk_records(msg)
    for r in refs:
        if r.section == 3 and r.rtype == TYPE_OPT:
            return r.ttl_offset + 4, r.end
    return None


def wants_padding(query: bytes) -> bool:
    """True when *query* (DNS wire) carries an EDNS Padding option; False for a
    query without one or that does not parse."""
    try:
        where = _opt_options(query)
    except (WireError, struct.error, IndexError):
        return False
    if where is None:
        return False
    i, end = where[0] + 2, where[1]
    while i + 4 <= end:
        code, length = _H.unpack_from(query, i)[0], _H.unpack_from(query, i + 2)[0]
        if code == OPT_PADDING:
            return True
        i += 4 + length
    return False


def pad_response(resp: bytes, block: int = RESPONSE_BLOCK) -> bytes:
    """*resp* with a Padding option that makes its length a multiple of *block* octets.

    Unchanged when it has no OPT record (a client that padded always sends one, and
    an answer without one cannot carry the option), when it does not parse, or when
    padded it would exceed 65535 octets.
    """
    try:
        where = _opt_options(resp)
    except (WireError, struct.error, IndexError):
        return resp
    if where is None:
        return resp
    rdlen_at, end = where
    pad = (-(len(resp) + 4)) % block
    total = len(resp) + 4 + pad
    if total > 65535:
        return resp
    (rdlen,) = _H.unpack_from(resp, rdlen_at)
    option = _H.pack(OPT_PADDING) + _H.pack(pad) + bytes(pad)
    return (
        resp[:rdlen_at] + _H.pack(rdlen + 4 + pad) + resp[rdlen_at + 2 : end] + option + resp[end:]
    )

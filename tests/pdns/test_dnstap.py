"""Frame Streams handshake and dnstap protobuf decoding, against a hand-encoded sender."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import dns.message
import dns.rrset

from mamori.pdns.sensors import dnstap


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _frame(mtype: int, response: bytes, zone: bytes = b"", identity: bytes = b"r1") -> bytes:
    msg = _field(1, mtype) + _field(12, 1_700_000_000) + _field(14, response)
    if zone:
        msg += _field(11, zone)
    payload = _field(1, identity) + _field(14, msg) + _field(15, 1)
    return struct.pack("!I", len(payload)) + payload


def _answer(name: str) -> bytes:
    q = dns.message.make_query(name, "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.44"))
    return r.to_wire()


def test_handshake_frames_and_stop(tmp_path: Path) -> None:
    got: list[dnstap.TapMessage] = []

    async def main() -> bytes:
        sock = tmp_path / "t.sock"
        server, col = await dnstap.serve(f"unix:{sock}", got.append)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(dnstap.control(dnstap.READY))
        accept = await reader.readexactly(8 + 4 + 8 + len(dnstap.CONTENT_TYPE))
        writer.write(dnstap.control(dnstap.START))
        writer.write(_frame(4, _answer("a.example."), zone=b"\x07example\x00"))
        writer.write(_frame(6, _answer("b.example.")))
        writer.write(_frame(5, b"\x00" * 12))  # CLIENT_QUERY: not kept
        writer.write(struct.pack("!I", 3) + b"\xff\xff\xff")  # not protobuf: counted
        writer.write(dnstap.control(dnstap.STOP, None))
        finish = await reader.readexactly(12)
        writer.close()
        server.close()
        assert col.frames == 4 and col.malformed == 1
        return accept + finish

    raw = asyncio.run(main())
    assert struct.unpack("!III", raw[:12]) == (0, 4 + 8 + len(dnstap.CONTENT_TYPE), dnstap.ACCEPT)
    assert struct.unpack("!III", raw[-12:]) == (0, 4, dnstap.FINISH)
    assert [(m.mtype, m.identity, m.query_zone, m.when) for m in got] == [
        (4, "r1", "example.", 1_700_000_000),
        (6, "r1", "", 1_700_000_000),
    ]
    g = dnstap.Gatherer("dnstap:", True)
    for m in got:
        g(m)
    assert {(k[0], k[3]) for k in g.agg.tuples} == {("a.example.", "example."), ("b.example.", "")}
    assert set(g.agg.sensors) == {"dnstap:r1"}

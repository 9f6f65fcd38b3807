"""dnstap collector: Frame Streams (bidirectional) on a unix socket or TCP, dnstap protobuf.

Resolvers (Unbound, BIND, Knot Resolver, PowerDNS Recursor, CoreDNS) connect
and send ``Dnstap`` messages; RESOLVER/FORWARDER/AUTH/CLIENT_RESPONSE
messages become observations (their ``response_message``). For
RESOLVER_RESPONSE the ``query_zone`` is the bailiwick. Query addresses are
not kept. Runs as ``mamori pdns collect`` (or a child of ``mamori serve``
when ``[pdns] dnstap`` is set), never on the DNS loop.

Frame Streams: a data frame is a 4-byte length and the payload; a control
frame is a zero length (escape), its length, its type (ACCEPT 1, START 2,
STOP 3, READY 4, FINISH 5) and fields (1 = content type). The collector
answers READY with ACCEPT and STOP with FINISH.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mamori.pdns.aggregate import Aggregator
from mamori.store.pdns_base import PdnsStore

log = logging.getLogger(__name__)

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
ACCEPT, START, STOP, READY, FINISH = 1, 2, 3, 4, 5
MAX_FRAME = 1 << 20
# dnstap Message.Type values whose response_message we keep
RESPONSES = {2: "AUTH_RESPONSE", 4: "RESOLVER_RESPONSE", 6: "CLIENT_RESPONSE",
             8: "FORWARDER_RESPONSE"}  # fmt: skip


@dataclass
class TapMessage:
    mtype: int
    identity: str
    response: bytes
    when: int
    query_zone: str


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(buf: bytes) -> dict[int, list[int | bytes]]:
    """A protobuf message's fields: number -> values (ints, or bytes for length-delimited)."""
    out: dict[int, list[int | bytes]] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        value: int | bytes
        if wt == 0:
            value, i = _varint(buf, i)
        elif wt == 1:
            if i + 8 > len(buf):
                raise ProtobufError("truncated fixed64")
            value, i = struct.unpack_from("<Q", buf, i)[0], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated bytes field")
            value, i = buf[i : i + n], i + n
        elif wt == 5:
            if i + 4 > len(buf):
                raise ProtobufError("truncated fixed32")
            value, i = struct.unpack_from("<I", buf, i)[0], i + 4
        else:
            raise ProtobufError(f"wire type {wt}")
        out.setdefault(num, []).append(value)
    return out


def parse(payload: bytes) -> TapMessage | None:
    """A Dnstap frame's response message, or None when it carries none we keep."""
    top = fields(payload)
    msgs = top.get(14)
    if not msgs or not isinstance(msgs[0], bytes):
        return None
    m = fields(msgs[0])
    mtype = m.get(1, [0])[0]
    resp = m.get(14, [b""])[0]
    if mtype not in RESPONSES or not isinstance(resp, bytes) or not resp:
        return None
    sec = m.get(12, m.get(8, [0]))[0]
    ident = top.get(1, [b""])[0]
    zone = b""
    zf = m.get(11)
    if zf and isinstance(zf[0], bytes):
        zone = zf[0]
    return TapMessage(
        int(mtype),
        ident.decode("utf-8", "replace") if isinstance(ident, bytes) else "",
        resp,
        int(sec) if isinstance(sec, int) else int(time.time()),
        _wire_name(zone) if mtype == 4 and zone else "",
    )


def _wire_name(wire: bytes) -> str:
    import dns.name

    try:
        return dns.name.from_wire(wire, 0)[0].to_text().lower()
    except Exception:  # a malformed zone name: no bailiwick, the record still counts
        return ""


def control(ctype: int, content_type: bytes | None = CONTENT_TYPE) -> bytes:
    body = struct.pack("!I", ctype)
    if content_type is not None:
        body += struct.pack("!II", 1, len(content_type)) + content_type
    return struct.pack("!II", 0, len(body)) + body


class Collector:
    """Accepts Frame Streams connections; observations go to *sink*."""

    def __init__(self, sink: Callable[[TapMessage], None], sensor: str = "") -> None:
        self.sink = sink
        self.sensor = sensor
        self.frames = 0
        self.malformed = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                (n,) = struct.unpack("!I", await reader.readexactly(4))
                if n == 0:  # control frame
                    (clen,) = struct.unpack("!I", await reader.readexactly(4))
                    if clen > 512:
                        raise ProtobufError("control frame too long")
                    body = await reader.readexactly(clen)
                    ctype = struct.unpack("!I", body[:4])[0]
                    if ctype == READY:
                        writer.write(control(ACCEPT))
                        await writer.drain()
                    elif ctype == STOP:
                        writer.write(control(FINISH, None))
                        await writer.drain()
                        return
                    continue
                if n > MAX_FRAME:
                    raise ProtobufError(f"frame of {n} bytes")
                payload = await reader.readexactly(n)
                self.frames += 1
                try:
                    msg = parse(payload)
                except ProtobufError:
                    self.malformed += 1
                    continue
                if msg is not None:
                    self.sink(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except ProtobufError as e:
            log.warning("dnstap: connection dropped: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def serve(
    where: str, sink: Callable[[TapMessage], None]
) -> tuple[asyncio.AbstractServer, Collector]:
    """Listen on ``unix:/path`` or ``tcp:HOST:PORT``."""
    col = Collector(sink)
    if where.startswith("unix:"):
        path = Path(where[5:])
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await asyncio.start_unix_server(col.handle, path=str(path))
        os.chmod(path, 0o666)  # resolvers run as their own users
    elif where.startswith("tcp:"):
        host, _, port = where[4:].rpartition(":")
        server = await asyncio.start_server(col.handle, host.strip("[]"), int(port))
    else:
        raise ValueError(f"dnstap listener {where!r}: use unix:/path or tcp:HOST:PORT")
    return server, col


class Gatherer:
    """Tap messages -> aggregated observations, flushed by the caller."""

    def __init__(self, sensor_prefix: str, keep_nxdomain: bool) -> None:
        self.agg = Aggregator(keep_nxdomain)
        self.prefix = sensor_prefix
        self.malformed = 0

    def __call__(self, msg: TapMessage) -> None:
        sensor = f"{self.prefix}{msg.identity}" if msg.identity else self.prefix.rstrip(":")
        if self.agg.add_answer(msg.response, msg.when, sensor, msg.query_zone) is None:
            self.malformed += 1


async def collect(
    where: str, store: PdnsStore, sensor_prefix: str, keep_nxdomain: bool, interval: float
) -> None:
    """Run the collector until cancelled, writing a batch every *interval* seconds."""
    gather = Gatherer(sensor_prefix, keep_nxdomain)
    server, col = await serve(where, gather)
    log.info("dnstap: collecting on %s", where)
    try:
        while True:
            await asyncio.sleep(interval)
            batch, gather.agg = gather.agg, Aggregator(keep_nxdomain)
            await asyncio.to_thread(batch.flush, store)
    finally:
        server.close()
        batch, gather.agg = gather.agg, Aggregator(keep_nxdomain)
        batch.flush(store)
        log.info(
            "dnstap: %d connections, %d frames, %d malformed",
            col.connections,
            col.frames,
            col.malformed + gather.malformed,
        )

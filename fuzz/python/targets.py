"""Coverage-guided fuzz targets (atheris) for every parser that reads outside input.

Each target is one function ``f(data: bytes) -> None`` that feeds *data* to
a parser the way mamori's own caller does, and lets through only the
exceptions that caller expects (``expected``): anything else escaping is a
finding (atheris stops and writes the input). Some targets also check an
invariant (the DNS pipeline's answer carries the query's ID and QR=1; the
passive DNS fast decoder agrees with dnspython).

Seeds: ``seeds(name)`` yields starting inputs from ``../shared/data`` (when
it is there) and from small built-in examples, so a run starts from real
shapes instead of empty input.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Target:
    """*run*: the harness; *seeds*: starting inputs; *what*: one line for the report."""

    run: Callable[[bytes], None]
    seeds: Callable[[], Iterator[bytes]]
    what: str


# ------------------------------------------------------------------ helpers
def _files(*globs: str, limit: int = 40, size: int = 256 * 1024) -> Iterator[bytes]:
    """The first bytes of up to *limit* files per glob under ../shared/data and tests/."""
    for pattern in globs:
        n = 0
        for base in (SHARED, ROOT / "tests" / "data", ROOT / "examples"):
            if not base.is_dir():
                continue
            for p in sorted(base.glob(pattern)):
                if p.is_file() and n < limit:
                    n += 1
                    with p.open("rb") as f:
                        yield f.read(size)


def _query(
    name: bytes = b"\x03www\x07example\x04test\x00", qtype: int = 1, edns: bool = True
) -> bytes:
    msg = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1 if edns else 0) + name
    msg += struct.pack("!HH", qtype, 1)
    if edns:
        msg += b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 0)
    return msg


def _response() -> bytes:
    q = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 2, 0, 0)
    name = b"\x03www\x07example\x04test\x00"
    q += name + struct.pack("!HH", 1, 1)
    q += b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 300, 6) + b"\x03cdn\xc0\x10"
    q += b"\xc0\x2a" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    return q


# -------------------------------------------------------- DNS wire fast path
class _Pipeline:
    """One Pipeline (the query path of ``mamori serve``) kept across inputs."""

    def __init__(self) -> None:
        from mamori import config
        from mamori.resolver.events import EventQueue
        from mamori.resolver.pipeline import Pipeline

        cfg = config.loads(
            '[server]\nrate_limit = 0\n[upstream]\nservers = ["127.0.0.1:9"]\ntimeout = 0.05\n'
            "[store]\nqueue_size = 10\n",
            Path("fuzz.toml"),
        )
        self.loop = asyncio.new_event_loop()
        self.events = EventQueue(10)
        self.pipeline = Pipeline(cfg, self.events)
        self.n = 0

    def feed(self, data: bytes, tcp: bool) -> None:
        sent: list[bytes] = []

        async def one() -> bytes | None:
            return self.pipeline.handle(
                data, ("127.0.0.1", 5353), lambda r, _a: sent.append(r), tcp
            )

        out = self.loop.run_until_complete(one())
        for res in (out, *sent):
            if res is None:
                continue
            if len(res) < 12 or res[:2] != data[:2] or not res[2] & 0x80:
                raise AssertionError(f"answer does not answer the query: {res[:12].hex()}")
        self.n += 1
        if self.n % 64 == 0:  # queries waiting on the (absent) upstream: cancel them
            tasks = list(self.pipeline.tasks)
            for t in tasks:
                t.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.events.items.clear()


_PIPE: _Pipeline | None = None


def wire_fast(data: bytes) -> None:
    global _PIPE
    if _PIPE is None:
        _PIPE = _Pipeline()
    if not data:
        return
    _PIPE.feed(data[1:], tcp=bool(data[0] & 1))


def _wire_seeds() -> Iterator[bytes]:
    for q in (_query(), _query(edns=False), _query(qtype=28), _query(b"\x00", 2), _response()):
        yield b"\x00" + q
        yield b"\x01" + q


# ------------------------------------------- passive DNS decoders (differential)
def pdns_decode(data: bytes) -> None:
    from mamori.pdns import fastparse
    from mamori.pdns.model import from_wire_dnspython

    fast = fastparse.observations(data, 1_700_000_000, "fuzz")
    if fast is None:
        with contextlib.suppress(ValueError):
            from_wire_dnspython(data, 1_700_000_000, "fuzz")
        return
    try:
        slow = from_wire_dnspython(data, 1_700_000_000, "fuzz")
    except ValueError:
        return  # the fast decoder is more lenient about the rest of the message
    if sorted(map(_plain, fast[0])) != sorted(map(_plain, slow[0])):
        raise AssertionError(f"fast decoder {fast[0]!r} != dnspython {slow[0]!r}")


def _plain(o: tuple[object, ...]) -> tuple[object, ...]:
    """An observation's fields as plain values (dnspython's enums become ints)."""
    return tuple(int(v) if isinstance(v, int) else v for v in o)


def _pdns_seeds() -> Iterator[bytes]:
    yield _response()
    yield _query()


# ------------------------------------------------------------- zone files
def zone(data: bytes) -> None:
    from mamori.dnsutil import textfile
    from mamori.policy import fastload
    from mamori.policy import zone as zonemod
    from mamori.policy.rules import ZoneError

    try:
        text = textfile.decode(data)
    except UnicodeDecodeError:
        return
    path = Path("fuzz.rpz")
    lines = text.splitlines()
    for on_error in ("refuse", "skip"):
        try:
            fastload.load_lines(lines, "rpz.fuzz.", path, on_error)
        except fastload.NeedsFullParser:
            with contextlib.suppress(ZoneError):
                zonemod.load_with_dnspython(text, "rpz.fuzz.", path, on_error)
        except ZoneError:
            pass


def _zone_seeds() -> Iterator[bytes]:
    yield (
        b"$TTL 300\n@ SOA ns. h. 1 3600 600 86400 60\n@ NS ns.\n"
        b"bad.example CNAME .\n*.bad.example CNAME .\nok.example CNAME rpz-passthru.\n"
        b"32.1.2.0.192.rpz-ip CNAME .\nns.evil.rpz-nsdname CNAME .\nwall.example A 192.0.2.1\n"
    )
    yield from _files("rpz/**/*.zone", "rpz/**/*.rpz", "**/*.rpz", limit=20)


# ----------------------------------------------------------------- feeds
_FORMATS = ("hosts", "domains", "wildcards", "adblock", "dnsmasq", "unbound", "bind", "csv",
            "ips", "rpz", "stix")  # fmt: skip


def feed(data: bytes) -> None:
    from mamori.dnsutil import textfile
    from mamori.feeds import parsers

    if not data:
        return
    fmt = _FORMATS[data[0] % len(_FORMATS)]
    try:
        text = textfile.decode(data[1:])
    except UnicodeDecodeError:
        return
    with contextlib.suppress(parsers.FeedError):
        parsers.parse(fmt, textfile.lines(text))


def _feed_seeds() -> Iterator[bytes]:
    for i, _fmt in enumerate(_FORMATS):
        for body in _files("feeds/*", limit=8, size=16 * 1024):
            yield bytes([i]) + body
    yield bytes([3]) + b"||a.example^$important\n@@||b.example^\n/ad[0-9]+\\./\n##.banner\n"


def threat_json(data: bytes) -> None:
    """STIX 2.1 objects and MISP events, as feeds/remote.py hands them over."""
    from mamori.feeds.parsers import FeedError, misp, stix

    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return
    try:
        if isinstance(doc, dict) and "Event" in doc:
            misp.parse_events([doc])
        elif isinstance(doc, dict) and isinstance(doc.get("objects"), list):
            stix.parse_objects(doc["objects"])
        elif isinstance(doc, list):
            stix.parse_objects(doc)
    except FeedError:
        pass


def _json_seeds() -> Iterator[bytes]:
    yield json.dumps({"type": "bundle", "objects": [{"type": "indicator", "spec_version": "2.1",
        "pattern_type": "stix", "pattern": "[domain-name:value = 'evil.example']",
        "valid_from": "2024-01-01T00:00:00Z"}]}).encode()  # fmt: skip
    yield json.dumps({"Event": {"info": "x", "Attribute": [{"type": "domain",
        "value": "evil.example", "to_ids": True}]}}).encode()  # fmt: skip
    yield from _files("feeds/*.json", limit=10)


# ------------------------------------------------------ captures and dnstap
def capture(data: bytes) -> None:
    from mamori.pdns.sensors import pcap

    reader = pcap.Reader()
    try:
        for ts, linktype, frame in pcap.frames(io.BytesIO(data)):
            try:
                for _msg in reader.frame(ts, linktype, frame):
                    pass
            except (struct.error, IndexError, ValueError):
                pass  # counted as malformed by Reader.messages
    except (pcap.CaptureError, struct.error, EOFError):
        pass


def _capture_seeds() -> Iterator[bytes]:
    yield from _files("pcap/*.pcap", "pcap/*.pcapng", limit=10, size=64 * 1024)


def dnstap_frame(data: bytes) -> None:
    from mamori.pdns.sensors import dnstap

    with contextlib.suppress(dnstap.ProtobufError):
        dnstap.parse(data)


def _dnstap_seeds() -> Iterator[bytes]:
    # Dnstap{type=MESSAGE, message=Message{type=CLIENT_RESPONSE, response_message=...}}
    resp = _response()
    msg = b"\x08\x06" + b"\x72" + bytes([len(resp)]) + resp
    yield b"\x78\x01" + b"\x72" + bytes([len(msg)]) + msg


# ------------------------------------------------------- zone transfer stream
def xfr_message(data: bytes) -> None:
    import dns.exception

    from mamori.xfr import wireparse

    # what the caller turns into TransferError("malformed transfer message ...")
    with contextlib.suppress(dns.exception.DNSException, wireparse.WireFormatError, ValueError):
        wireparse.parse(data)


def _xfr_seeds() -> Iterator[bytes]:
    yield _response()
    soa = (
        b"\x00"
        + struct.pack("!HHIH", 6, 1, 300, 22)
        + b"\x02ns\x00\x01h\x00"
        + struct.pack("!IIIII", 1, 3600, 600, 86400, 60)
    )
    yield struct.pack("!HHHHHH", 1, 0x8400, 1, 1, 0, 0) + b"\x00\x00\xfc\x00\x01" + soa


# ----------------------------------------------------------------- config
def config_text(data: bytes) -> None:
    from mamori import config
    from mamori.errors import ConfigError

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    with contextlib.suppress(ConfigError):
        config.loads(text, Path("/nonexistent/fuzz.toml"), resolv_conf="/nonexistent")


def _config_seeds() -> Iterator[bytes]:
    yield (ROOT / "examples" / "mamori.toml").read_bytes()
    yield (
        b'[server]\nworkers = 2\n[upstream]\nservers = ["127.0.0.1:53"]\n'
        b'[[group]]\nname = "k"\nclients = ["10.0.0.0/8"]\n[[rpz]]\nname = "a."\n'
        b'file = "a.zone"\ngroups = ["k"]\n'
    )


TARGETS: dict[str, Target] = {
    "wire-fast": Target(wire_fast, _wire_seeds, "DNS query path (Pipeline.handle), UDP and TCP"),
    "pdns-decode": Target(pdns_decode, _pdns_seeds, "passive DNS fast decoder vs dnspython"),
    "zone": Target(zone, _zone_seeds, "RPZ zone files: streaming loader and dnspython"),
    "feed": Target(feed, _feed_seeds, "every line-based feed format"),
    "threat-json": Target(threat_json, _json_seeds, "STIX 2.1 objects and MISP events"),
    "capture": Target(capture, _capture_seeds, "pcap/pcapng frames, IP, UDP/TCP reassembly"),
    "dnstap": Target(dnstap_frame, _dnstap_seeds, "dnstap protobuf frames"),
    "xfr": Target(xfr_message, _xfr_seeds, "AXFR/IXFR messages (wireparse)"),
    "config": Target(config_text, _config_seeds, "the TOML config loader"),
}


def all_seeds(name: str) -> list[bytes]:
    return [s for s in TARGETS[name].seeds() if s]


__all__ = ["TARGETS", "Target", "all_seeds"]

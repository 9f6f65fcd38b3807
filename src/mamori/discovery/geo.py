"""Address enrichment: the autonomous system (number, organisation) and the country of
an IP address, from offline databases the user supplies (nothing is fetched):

- MaxMind DB files (``.mmdb``: GeoLite2-ASN / -Country / -City, DB-IP's lite
  databases, IPinfo's lite database), read with MaxMind's ``maxminddb`` reader. Each
  file gives what it has: an ASN file the AS, a Country or City file the country.
- an iptoasn TSV (``ip2asn-combined.tsv``, plain or gzip): one range a line,
  ``range_start range_end AS_number country_code AS_description``, tab-separated.
- optionally the country the Regional Internet Registries assigned an address's block
  to, as bundled by the ``iptocc`` package (``builtin_country``): a default when no
  file gives a country.

Lookups are a bisection over sorted ranges (TSV) or the MaxMind tree, memoised per
address. Countries are ISO 3166-1 alpha-2 codes; ASNs are RFC 6793 32-bit numbers.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
import logging
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori.errors import MamoriError
from mamori.store.pdns_keys import ip_key

log = logging.getLogger(__name__)

CACHE_SIZE = 65_536  # addresses memoised (emptied whole when full)
_NO_COUNTRY = {"", "none", "unknown", "zz", "--"}


class GeoError(MamoriError):
    """A geo database that cannot be read: the message names the file (and line)."""


@dataclass(frozen=True)
class GeoInfo:
    """What is known of one address: ``asn`` (None: unknown or not routed), ``as_name``
    (the AS's organisation, "" unknown), ``country`` (ISO 3166-1 alpha-2, upper case,
    "" unknown)."""

    asn: int | None = None
    as_name: str = ""
    country: str = ""

    def fields(self) -> dict[str, Any]:
        """The known fields as ``{"asn": 15169, "as_name": "GOOGLE", "country": "US"}``
        (unknown ones left out): what JSON outputs add to an A/AAAA record."""
        out: dict[str, Any] = {}
        if self.asn is not None:
            out["asn"] = self.asn
            if self.as_name:
                out["as_name"] = self.as_name
        if self.country:
            out["country"] = self.country
        return out

    def label(self) -> str:
        """``AS15169 GOOGLE, US`` (the known parts); "" when nothing is known."""
        parts = []
        if self.asn is not None:
            parts.append(f"AS{self.asn} {self.as_name}".rstrip())
        if self.country:
            parts.append(self.country)
        return ", ".join(parts)


def parse_asn(text: str) -> int:
    """``15169``, ``AS15169`` or ``as15169`` -> 15169; ValueError otherwise."""
    t = text.strip()
    if t[:2].lower() == "as":
        t = t[2:]
    if not t.isdigit() or not 0 < int(t) < 1 << 32:
        raise ValueError(f"not an AS number: {text!r} (e.g. 15169 or AS15169)")
    return int(t)


def _country(code: Any) -> str:
    if not isinstance(code, str) or code.strip().lower() in _NO_COUNTRY:
        return ""
    return code.strip().upper()


_V4_BASE = 0xFFFF << 32  # an IPv4-mapped key (::ffff:a.b.c.d) as an integer, less the address
_V4_LAST = _V4_BASE + 0xFFFFFFFF


class _Ranges:
    """Sorted, non-overlapping ranges of one address family: starts and ends (IPv4 as
    32-bit offsets in arrays, IPv6 as integers), and per range the AS number, an index
    into the country codes and an index into the AS names (both kept once)."""

    def __init__(self, v4: bool) -> None:
        self.v4 = v4
        self.starts: Any = array("I") if v4 else []
        self.ends: Any = array("I") if v4 else []
        self.asns = array("I")
        self.cc = array("H")
        self.name = array("I")

    def add(self, a: int, b: int, asn: int, cc: int, name: int) -> None:
        self.starts.append(a)
        self.ends.append(b)
        self.asns.append(asn)
        self.cc.append(cc)
        self.name.append(name)

    def sort(self) -> None:
        """Order by start (iptoasn files are sorted already: then nothing is copied)."""
        st = self.starts
        if all(st[i] <= st[i + 1] for i in range(len(st) - 1)):
            return
        order = sorted(range(len(st)), key=st.__getitem__)
        for attr in ("starts", "ends", "asns", "cc", "name"):
            old = getattr(self, attr)
            new = type(old)(old.typecode) if isinstance(old, array) else []
            new.extend(old[i] for i in order)
            setattr(self, attr, new)

    def find(self, key: int) -> int:
        """The index of the range holding *key*, else -1."""
        i = bisect.bisect_right(self.starts, key) - 1
        return i if i >= 0 and key <= self.ends[i] else -1


class Ip2Asn:
    """An iptoasn TSV in memory (a bisection per lookup). Addresses are integers of their
    16-byte keys (``pdns_keys.ip_key``: IPv4 mapped into IPv6, as the passive DNS index
    keeps them). The full ip2asn-combined file (about 700k ranges) loads in about 2 s."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.v4 = _Ranges(v4=True)
        self.v6 = _Ranges(v4=False)
        self.countries: list[str] = []
        self.names: list[str] = []
        cc_index: dict[str, int] = {}
        cc_raw: dict[str, int] = {}  # the column as written -> index of its country code
        name_index: dict[str, int] = {}
        try:
            with path.open("rb") as raw:
                gz = raw.read(2) == b"\x1f\x8b"
            opener: Any = gzip.open if gz else open
            with opener(path, "rb") as f:
                for no, raw_bytes in enumerate(f, 1):
                    try:
                        raw_line = raw_bytes.decode("utf-8")
                    except UnicodeDecodeError:
                        raise GeoError(f"{path}:{no}: not UTF-8 text") from None
                    line = raw_line.rstrip("\r\n")
                    if not line or line.startswith("#"):
                        continue
                    cols = line.split("\t")
                    if len(cols) < 4:
                        raise GeoError(
                            f"{path}:{no}: expected range_start, range_end, AS_number,"
                            " country_code, AS_description (tab-separated)"
                        )
                    lo, hi = ip_key(cols[0].strip()), ip_key(cols[1].strip())
                    if lo is None or hi is None:
                        raise GeoError(f"{path}:{no}: not an address range: {cols[0]} {cols[1]}")
                    try:
                        if not cols[2].strip().isdigit():
                            raise ValueError
                        asn = int(cols[2])
                        if not 0 <= asn < 1 << 32:
                            raise ValueError
                    except ValueError:
                        raise GeoError(f"{path}:{no}: not an AS number: {cols[2]!r}") from None
                    a, b = int.from_bytes(lo), int.from_bytes(hi)
                    if b < a:
                        raise GeoError(f"{path}:{no}: range ends before it starts")
                    if (_V4_BASE <= a <= _V4_LAST) != (_V4_BASE <= b <= _V4_LAST):
                        raise GeoError(f"{path}:{no}: a range mixing IPv4 and IPv6")
                    cc = cc_raw.get(cols[3])
                    if cc is None:
                        cc = cc_raw[cols[3]] = cc_index.setdefault(_country(cols[3]), len(cc_index))
                    name = name_index.setdefault(
                        cols[4].strip() if len(cols) > 4 and asn else "", len(name_index)
                    )
                    if a >= _V4_BASE and b <= _V4_LAST:
                        self.v4.add(a - _V4_BASE, b - _V4_BASE, asn, cc, name)
                    else:
                        self.v6.add(a, b, asn, cc, name)
        except OSError as e:
            raise GeoError(f"{path}: cannot read: {e.strerror or e}") from None
        except (EOFError, gzip.BadGzipFile) as e:
            raise GeoError(f"{path}: not a readable gzip file: {e}") from None
        self.countries = list(cc_index)
        self.names = list(name_index)
        self.v4.sort()
        self.v6.sort()
        self._by_asn: dict[int, list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return len(self.v4.starts) + len(self.v6.starts)

    def lookup(self, key: int) -> GeoInfo | None:
        """The range holding the address *key* (an integer of ``ip_key``), else None."""
        t, k = (self.v4, key - _V4_BASE) if _V4_BASE <= key <= _V4_LAST else (self.v6, key)
        i = t.find(k)
        if i < 0:
            return None
        asn = t.asns[i]
        return GeoInfo(asn or None, self.names[t.name[i]], self.countries[t.cc[i]])

    def ranges(self, asn: int) -> list[tuple[int, int]]:
        """Every (first, last) address range (integers of ``ip_key``) of AS *asn*."""
        if self._by_asn is None:
            by: dict[int, list[tuple[int, int]]] = {}
            for t, base in ((self.v4, _V4_BASE), (self.v6, 0)):
                for i, a in enumerate(t.asns):
                    if a:
                        by.setdefault(a, []).append((t.starts[i] + base, t.ends[i] + base))
            self._by_asn = by
        return list(self._by_asn.get(asn, ()))


class Mmdb:
    """A MaxMind DB file (``maxminddb``, memory-mapped): the AS and/or country fields of
    GeoLite2 / GeoIP2, DB-IP and IPinfo records. MODE_AUTO: the C extension (libmaxminddb,
    memory-mapped) when the wheel has it, else the pure-Python reader."""

    def __init__(self, path: Path) -> None:
        import maxminddb

        self.path = path
        try:
            self.reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
            self.kind = self.reader.metadata().database_type
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise GeoError(f"{path}: not a readable MaxMind DB file: {detail}") from None
        self._ranges: dict[int, list[tuple[int, int]]] | None = None
        self.damaged = False  # a lookup found damaged data (logged once)

    def lookup(self, address: str) -> GeoInfo | None:
        try:
            rec = self.reader.get(address)
        except ValueError:  # an IPv6 address in an IPv4-only database; a closed reader
            return None
        except Exception as e:  # maxminddb.InvalidDatabaseError: a damaged data section
            if not self.damaged:
                log.error("[geo] %s: damaged database (%s): its answers are left out", self.path, e)
            self.damaged = True
            return None
        return _from_record(rec) if isinstance(rec, dict) else None

    def ranges(self, asn: int) -> list[tuple[int, int]]:
        """Every network of AS *asn* as (first, last) integers of ``ip_key``: one walk of
        the whole tree, then kept (seconds for a GeoLite2-ASN file)."""
        if self._ranges is None:
            by: dict[int, list[tuple[int, int]]] = {}
            for net, rec in self.reader:
                info = _from_record(rec) if isinstance(rec, dict) else None
                if info is None or info.asn is None:
                    continue
                lo = ip_key(str(net.network_address))
                hi = ip_key(str(net.broadcast_address))
                if lo is not None and hi is not None:
                    by.setdefault(info.asn, []).append((int.from_bytes(lo), int.from_bytes(hi)))
            self._ranges = by
        return list(self._ranges.get(asn, ()))

    def close(self) -> None:
        self.reader.close()


def _from_record(rec: dict[Any, Any]) -> GeoInfo | None:
    asn: int | None = None
    name = ""
    raw = rec.get("autonomous_system_number", rec.get("asn"))  # MaxMind/DB-IP; IPinfo "AS1"
    if isinstance(raw, int) and raw > 0:
        asn = raw
    elif isinstance(raw, str):
        try:
            asn = parse_asn(raw)
        except ValueError:
            asn = None
    org = rec.get("autonomous_system_organization", rec.get("as_name", ""))
    if asn is not None and isinstance(org, str):
        name = org
    country = ""
    for key in ("country", "registered_country"):
        sub = rec.get(key)
        if isinstance(sub, dict):
            country = _country(sub.get("iso_code"))
            if country:
                break
    if not country:
        country = _country(rec.get("country_code"))  # IPinfo lite
    if asn is None and not country:
        return None
    return GeoInfo(asn, name, country)


@dataclass
class Geo:
    """The configured sources, asked in order: the first that knows the AS gives the AS,
    the first that knows the country the country (then the bundled RIR data when
    *builtin_country*)."""

    mmdbs: Sequence[Mmdb] = ()
    tsvs: Sequence[Ip2Asn] = ()
    builtin_country: bool = False
    _cache: dict[str, GeoInfo | None] = field(default_factory=dict)

    def lookup(self, address: str) -> GeoInfo | None:
        """*address* (IPv4 or IPv6 text) -> GeoInfo; None if not an address or nothing is
        known of it (a damaged MaxMind DB is logged once and its answers left out)."""
        try:
            return self._cache[address]
        except KeyError:
            pass
        info = self._lookup(address)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[address] = info
        return info

    def _lookup(self, address: str) -> GeoInfo | None:
        key = ip_key(address)
        if key is None:
            return None
        asn: int | None = None
        name = country = ""
        found: list[GeoInfo | None] = [m.lookup(address) for m in self.mmdbs]
        if self.tsvs:
            k = int.from_bytes(key)
            found += [t.lookup(k) for t in self.tsvs]
        for info in found:
            if info is None:
                continue
            if asn is None and info.asn is not None:
                asn, name = info.asn, info.as_name
            if not country:
                country = info.country
        if not country and self.builtin_country:
            country = _builtin(address)
        if asn is None and not country:
            return None
        return GeoInfo(asn, name, country)

    def asn_ranges(self, asn: int) -> list[tuple[bytes, bytes]]:
        """The address ranges of AS *asn* in every source, merged, as (first, last)
        16-byte keys (``pdns_keys.ip_key``): what ``PdnsStore.rdata_ip`` takes."""
        sources: list[Mmdb | Ip2Asn] = [*self.mmdbs, *self.tsvs]
        spans = sorted({s for src in sources for s in src.ranges(asn)})
        merged: list[list[int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return [(lo.to_bytes(16), hi.to_bytes(16)) for lo, hi in merged]

    def close(self) -> None:
        for m in self.mmdbs:
            m.close()


def _builtin(address: str) -> str:
    from iptocc import country_code

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return ""
    return _country(country_code(address))


def open_geo(mmdb: Sequence[Path], ip2asn: Sequence[Path], builtin_country: bool) -> Geo:
    """Open every database now (the TSV read whole); GeoError naming the file (and line)
    of the first that cannot be read."""
    mmdbs = [Mmdb(p) for p in mmdb]
    try:
        tsvs = [Ip2Asn(p) for p in ip2asn]
    except GeoError:
        for m in mmdbs:
            m.close()
        raise
    return Geo(mmdbs, tsvs, builtin_country)


def key_text(key: bytes) -> str:
    """A 16-byte ``ip_key`` back to the address text (IPv4 for a mapped address)."""
    addr = ipaddress.IPv6Address(key)
    return str(addr.ipv4_mapped or addr)


class GeoHolder:
    """The ``Geo`` of the configuration in force, for a long-running process (the web
    app): opened on first use and again when ``[geo]`` changes (SIGHUP reload) or
    one of its files is replaced (mtime, size or inode differ: a stat per use). A database
    that cannot be read then is logged once and the process goes on without enrichment
    (None; the bundled country data alone when ``builtin_country``; ``broken`` set) until
    the configuration or the files change again."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._geo: Geo | None = None
        self._lock = threading.Lock()  # request threads ask at once: one opens
        self.broken = False  # a configured database could not be read (see the log)

    def get(
        self, mmdb: Sequence[Path], ip2asn: Sequence[Path], builtin: bool, on: bool
    ) -> Geo | None:
        with self._lock:
            stats = _stats([*mmdb, *ip2asn]) if on else ()
            key = (on, tuple(mmdb), tuple(ip2asn), builtin, stats)
            if key != self._key:
                old, self._geo, self._key = self._geo, None, key
                if old is not None:
                    old.close()
                self.broken = False
                if on:
                    try:
                        self._geo = open_geo(mmdb, ip2asn, builtin)
                    except GeoError as e:
                        self.broken = True
                        if builtin:
                            log.error("[geo] %s: running on the bundled country data only", e)
                            self._geo = Geo((), (), True)
                        else:
                            log.error("[geo] %s: running without ASN/country enrichment", e)
            return self._geo


def _stats(paths: Sequence[Path]) -> tuple[tuple[int, int, int] | None, ...]:
    """Per file (st_mtime_ns, st_size, st_ino); None for one that cannot be stat'ed: a
    file replaced in place changes its tuple and is reopened at the next use."""
    out: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


ADDRESS_TYPES = (1, 28)  # A, AAAA: the records whose rdata is an address


def record_geo(geo: Geo | None, rrtype: int, rdata: str) -> GeoInfo | None:
    """The GeoInfo of an A/AAAA record's address; None for other types or unknown."""
    if geo is None or rrtype not in ADDRESS_TYPES:
        return None
    return geo.lookup(rdata)


def answer_geo(geo: Geo | None, answer: str) -> list[tuple[str, GeoInfo]]:
    """(address, GeoInfo) of each A/AAAA address in a query log answer summary
    (``"A 192.0.2.1;AAAA 2001:db8::1"``), in order, each address once."""
    if geo is None or not answer:
        return []
    out: list[tuple[str, GeoInfo]] = []
    seen: set[str] = set()
    for part in answer.split(";"):
        kind, _, value = part.strip().partition(" ")
        value = value.strip()
        if kind not in ("A", "AAAA") or value in seen:
            continue
        seen.add(value)
        info = geo.lookup(value)
        if info is not None:
            out.append((value, info))
    return out


def records_on_asn(
    store: Any, geo: Geo, asn: int, fences: Any = None, limit: int = 10000, offset: int = 0
) -> list[Any]:
    """The pivot "what is hosted on this AS": the A/AAAA records (``store.pdns_base.Record``)
    whose address lies in one of AS *asn*'s ranges and whose address lookup gives *asn*
    (where ranges overlap a record is under one AS only), by ``PdnsStore.rdata_ip`` range
    lookups, in the store's order (time_last descending, then the tuple), *offset* and
    *limit* applied to the whole. *fences*: ``Fences`` (None: none)."""
    from mamori.store.pdns_base import NO_FENCES

    fences = NO_FENCES if fences is None else fences
    want = offset + limit
    merged: dict[tuple[str, int, str, str], Any] = {}
    for lo, hi in geo.asn_ranges(asn):
        for r in store.rdata_ip(lo, hi, fences, want, 0):
            info = geo.lookup(r.rdata)  # overlapping ranges: the AS a lookup gives decides
            if info is not None and info.asn == asn:
                merged[(r.rrname, r.rrtype, r.rdata, r.bailiwick)] = r
    out = sorted(
        merged.values(),
        key=lambda r: (-r.time_last, r.rrname, r.rrtype, r.rdata, r.bailiwick),
    )
    return out[offset:want]


def geo_of(holder: GeoHolder, cfg: Any) -> Geo | None:
    """*holder*'s Geo for the ``[geo]`` section of the ``Config`` *cfg*."""
    g = cfg.geo
    return holder.get(g.mmdb, g.ip2asn, g.builtin_country, g.enabled)

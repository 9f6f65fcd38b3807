"""Replaying logged queries: the query log as the preview reads it, and the
policy engine's decision for one logged query (as the resolver takes it).

The query log is a ``QueryLogReader`` (SQLite ``store.sqlite`` read-only, or ClickHouse). A
logged answer is its short summary (``resolver.cache``: ``"CNAME a.example.;A
192.0.2.1"``, at most 8 records): its CNAME targets and addresses are what the
resolver's post-check sees (CNAME chain, Response-IP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from pathlib import Path

from mamori.dnsutil import wire
from mamori.errors import MamoriError, StoreError
from mamori.policy.compiled import CompiledZone
from mamori.policy.engine import Policy
from mamori.policy.model import Action, Match, Trigger
from mamori.store.base import QueryLogReader
from mamori.store.querylog_sqlite import SQLiteQueryReader


class PreviewError(MamoriError):
    """A preview that cannot run: unknown name, unreadable file, unusable feed."""


# ---------------------------------------------------------------- the query log
class QueryLog:
    """The query log as the preview reads it: *source* is the SQLite file
    (``store.sqlite``, read-only) or any ``QueryLogReader`` (ClickHouse).

    PreviewError when the file does not exist or is not a query log.
    """

    def __init__(self, source: Path | QueryLogReader) -> None:
        self.path = source if isinstance(source, Path) else None  # a SQLite file
        if isinstance(source, Path):
            try:
                # used by one thread at a time: the scan thread while the candidate compiles
                source = SQLiteQueryReader(source, persistent=True)
            except StoreError as e:
                raise PreviewError(str(e)) from e
        self.reader: QueryLogReader = source

    def close(self) -> None:
        self.reader.close()

    def interrupt(self) -> None:
        """Stop a read running in another thread (SQLite; a ClickHouse read ends alone)."""
        stop = getattr(self.reader, "interrupt", None)
        if stop is not None:
            stop()

    def count(self, since: float, until: float) -> int:
        """Queries in [since, until)."""
        return self.reader.count(since, until)

    def totals(self, since: float, until: float) -> tuple[int, int]:
        """(queries, distinct clients) in [since, until)."""
        return self.reader.count(since, until), self.reader.distinct_clients(since, until)

    def names(self, since: float, until: float) -> set[str]:
        """The distinct query names."""
        return self.reader.names(since, until)

    def cname_answers(self, since: float, until: float) -> set[str]:
        """The distinct answers naming a CNAME target."""
        return self.reader.answers(since, until, cname_only=True)

    def answers(self, since: float, until: float) -> set[str]:
        """The distinct answers holding a CNAME or an A/AAAA record."""
        return self.reader.answers(since, until)

    def clients(self, since: float, until: float) -> list[str]:
        return self.reader.clients(since, until)

    def rows(
        self,
        since: float,
        until: float,
        names: Iterable[str],
        answers: Iterable[str],
        clients: Iterable[str],
    ) -> Iterator[tuple[str, str, int, str, str, int]]:
        """(qname, client, qtype, client_group, answer, queries) of the rows whose name,
        answer or client is one of those given, grouped."""
        yield from self.reader.grouped(since, until, names, answers, clients)


# ------------------------------------------------------------------- decisions
def parse_answer(answer: str) -> tuple[tuple[bytes, ...], tuple[tuple[int, int], ...]]:
    """(CNAME targets in order as wire names, A/AAAA addresses as (version, int)) of a
    logged answer summary (``"CNAME a.example.;A 192.0.2.1"``)."""
    chain: list[bytes] = []
    addrs: list[tuple[int, int]] = []
    for part in answer.split(";"):
        rtype, _, value = part.partition(" ")
        if rtype == "CNAME" and value:
            key = wire_name(value)
            if key:
                chain.append(key)
        elif rtype in ("A", "AAAA") and value:
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                continue
            addrs.append((ip.version, int(ip)))
    return tuple(chain), tuple(addrs)


def decide(
    policy: Policy,
    client: str,
    qname: bytes,
    qtype: int,
    chain: tuple[bytes, ...],
    addrs: tuple[tuple[int, int], ...],
) -> Match | None:
    """The match that decides a query as the resolver decides it (pipeline pre-check,
    then postcheck): the query name's Client-IP/QNAME match, then along the CNAME
    chain, Response-IP on the last name's addresses, zones in order, log-only zones
    skipped. No NSDNAME/NSIP (no name-server data). None: no zone decides."""
    found, _ = policy.check_query_typed(client, qname, qtype)
    names = (qname, *chain)
    last = len(names) - 1
    for pos, name in enumerate(names):
        match = found if pos == 0 else policy.check_query_typed(None, name, qtype)[0]
        limit = match.rule.zone_index if match is not None else policy.nzones
        if policy.late_before(limit):
            late, _ = policy.check_late(addrs if pos == last else (), (), (), limit)
            if late is not None:
                return late
        if match is not None:
            return match
    return None


def blocks(m: Match | None) -> bool:
    """Does *m* block the query (any action but PASSTHRU: the answer is replaced or none
    is sent; the query log's outcome ``blocked`` or ``dropped``)?"""
    return m is not None and m.action is not Action.PASSTHRU


def wire_name(name: str) -> bytes:
    """The lowercased wire form of a logged name (the engine's key); b"" if it has none."""
    name = name.lower()
    if "\\" not in name:  # the usual case, without the escape-aware parser
        text = name.rstrip(".")
        if not text:
            return b"\x00"
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            return b""
        labels = raw.split(b".")
        if all(0 < len(lb) < 64 for lb in labels) and len(raw) < 254:
            return b"".join(bytes((len(lb),)) + lb for lb in labels) + b"\x00"
        return b""
    try:
        return wire.text_to_name(name)
    except (ValueError, UnicodeEncodeError):
        return b""


def client_listed(zone: CompiledZone, client: str) -> bool:
    """Has *zone* a Client-IP rule for *client* (an address, IPv4-mapped taken as IPv4)?"""
    try:
        addr = ipaddress.ip_address(client.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return zone.ip_longest(Trigger.CLIENT_IP, addr.version, int(addr)) is not None

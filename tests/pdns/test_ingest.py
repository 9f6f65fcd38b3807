"""Packet captures into the passive DNS store: real captures (exact tuples) and every framing."""

from __future__ import annotations

import struct
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from mamori.pdns.ingest import ingest
from mamori.store.pdns_keys import ip_key, net_range
from mamori.store.pdns_sqlite import Fences, PdnsSQLite
from tests.support import pcapgen

PCAP = Path(__file__).resolve().parents[3] / "shared/data/pcap"


@pytest.fixture
def store(tmp_path: Path) -> PdnsSQLite:
    return PdnsSQLite(tmp_path / "pdns.sqlite")


def _tuples(store: PdnsSQLite) -> set[tuple[str, int, str, int, int, int]]:
    rows = store.db.execute(
        "SELECT rrname, rrtype, rdata, time_first, time_last, count FROM rrset"
    ).fetchall()
    return set(rows)


def test_real_captures_give_exact_tuples(store: PdnsSQLite) -> None:
    r = ingest([PCAP / "gopassivedns__mx.pcap", PCAP / "gopassivedns__ns.pcap",
                PCAP / "gopassivedns__aaaa.pcap", PCAP / "gopassivedns__nxdomain.pcap"],
               store, "test")  # fmt: skip
    assert r.counters.responses == 4 and r.counters.matched == 4 and r.nxdomain == 1
    got = _tuples(store)
    hosts = ((10, ""), (20, "alt1."), (30, "alt2."), (40, "alt3."), (50, "alt4."))
    mx = {("google.com.", 15, f"{p} {h}aspmx.l.google.com.", 1460417376, 1460417376, 1)
          for p, h in hosts}  # fmt: skip
    assert mx <= got
    ns = {row[2] for row in got if row[1] == 2}
    assert ns == {"ns1.google.com.", "ns2.google.com.", "ns3.google.com.", "ns4.google.com."}
    aaaa = [row for row in got if row[1] == 28]
    assert [(a[0], a[2]) for a in aaaa] == [("www.google.com.", "2607:f8b0:4001:c02::93")]
    soa = [row for row in got if row[1] == 6]
    assert soa and soa[0][0] == "com."  # the negative answer's SOA
    assert store.nxdomain("asdtartfgeasf.asdfgsdf.com") == [
        ("asdtartfgeasf.asdfgsdf.com.", 1, 1460707463, 1460707463, 1)
    ]


def test_tcp_capture_is_reassembled(store: PdnsSQLite) -> None:
    r = ingest([PCAP / "gopassivedns__100_tcp_lookups.pcap"], store, "test")
    assert r.counters.tcp_messages == 600 and r.counters.responses == 300
    assert r.counters.matched == 300 and r.counters.malformed == 0
    counts = {row[0]: row[5] for row in _tuples(store)}
    assert sum(counts.values()) == 300 and set(counts) == {
        "golang.org.", "www.fark.com.", "www.slashdot.org.",
    }  # fmt: skip


def test_udp_pcapng_aggregates_counts_and_times(tmp_path: Path, store: PdnsSQLite) -> None:
    ingest([PCAP / "gopassivedns__100_udp_lookups.pcap"], store, "test")
    rows = _tuples(store)
    assert sum(row[5] for row in rows) == 50  # 50 responses, one A record each
    (rec,) = store.rrset("www.fark.com")
    assert rec.rdata == "64.191.171.200" and rec.time_first <= rec.time_last
    # the same capture again (even under another name): already in the store, nothing changes
    copy = tmp_path / "renamed.pcapng"
    copy.write_bytes((PCAP / "gopassivedns__100_udp_lookups.pcap").read_bytes())
    again_result = ingest([copy], store, "test")
    assert again_result.already == 1 and again_result.observations == 0
    (again,) = store.rrset("www.fark.com")
    assert again == rec
    assert store.sensors()[0][:2] == ("test", 50)


def _response(name: str, rdtype: str, *rdata: str, qid: int = 7) -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, list(rdata)))
    return r.to_wire()


def _query(name: str, rdtype: str, qid: int = 7) -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return q.to_wire()


@pytest.mark.parametrize("form", ["ethernet", "vlan", "qinq", "sll", "raw", "pcapng"])
def test_framings(tmp_path: Path, store: PdnsSQLite, form: str) -> None:
    frames = []
    for i, (src, dst) in enumerate(
        [("192.0.2.10", "192.0.2.53"), ("2001:db8::10", "2001:db8::53")]
    ):
        name = f"host{i}.example."
        q = pcapgen.udp(src, 40000 + i, dst, 53, _query(name, "A", qid=i))
        a = pcapgen.udp(dst, 53, src, 40000 + i, _response(name, "A", f"198.51.100.{i}", qid=i))
        frames += [(1700000000.0 + i, q), (1700000000.5 + i, a)]
    link = 1
    if form in ("ethernet", "pcapng"):
        frames = [(t, pcapgen.ether(p)) for t, p in frames]
    elif form in ("vlan", "qinq"):
        frames = [(t, pcapgen.ether(p, vlans=1 if form == "vlan" else 2)) for t, p in frames]
    elif form == "sll":
        frames, link = [(t, pcapgen.sll(p)) for t, p in frames], 113
    else:
        link = 101
    path = tmp_path / "c.cap"
    (pcapgen.write_pcapng if form == "pcapng" else pcapgen.write_pcap)(path, frames, link)
    r = ingest([path], store, "test")
    assert r.counters.responses == 2 and r.counters.matched == 2, r.summary()
    assert {(x[0], x[2], x[3]) for x in _tuples(store)} == {
        ("host0.example.", "198.51.100.0", 1700000000),
        ("host1.example.", "198.51.100.1", 1700000001),
    }


def test_tcp_out_of_order_retransmitted_and_split(tmp_path: Path, store: PdnsSQLite) -> None:
    msgs = [_response(f"t{i}.example.", "A", f"203.0.113.{i}", qid=i) for i in range(3)]
    stream = b"".join(struct.pack("!H", len(m)) + m for m in msgs)
    cut = [0, 5, 40, len(stream) - 20, len(stream)]
    segs = [(cut[i], stream[cut[i] : cut[i + 1]]) for i in range(len(cut) - 1)]
    base = 1000
    s, c = "192.0.2.53", "192.0.2.10"
    frames = [(1.0, pcapgen.tcp(s, 53, c, 5555, base - 1, b"", flags=0x12))]  # SYN-ACK
    order = [segs[1], segs[0], segs[0], segs[3], segs[2]]  # out of order + a retransmission
    for off, data in order:
        frames.append((2.0, pcapgen.tcp(s, 53, c, 5555, base + off, data)))
    frames.append((3.0, pcapgen.tcp(s, 53, c, 5555, base + 10, stream[10:60])))  # overlapping
    path = tmp_path / "t.pcap"
    pcapgen.write_pcap(path, [(t, pcapgen.ether(p)) for t, p in frames])
    r = ingest([path], store, "test")
    assert r.counters.tcp_messages == 3 and r.counters.malformed == 0, r.summary()
    assert {x[0] for x in _tuples(store)} == {"t0.example.", "t1.example.", "t2.example."}


def test_malformed_packets_are_counted_and_skipped(tmp_path: Path, store: PdnsSQLite) -> None:
    good = pcapgen.udp(
        "192.0.2.53", 53, "192.0.2.10", 4000, _response("ok.example.", "A", "192.0.2.1")
    )
    bad_dns = pcapgen.udp("192.0.2.53", 53, "192.0.2.10", 4001, b"\x00\x01\x81\x80" + b"\xff" * 20)
    short = b"\x45\x00"
    frag = pcapgen.ip("192.0.2.53", "192.0.2.10", 17, b"\x00" * 30, frag=0x2000)
    path = tmp_path / "m.pcap"
    pcapgen.write_pcap(path, [(1.0, pcapgen.ether(p)) for p in (bad_dns, short, frag, good)])
    r = ingest([path], store, "test")
    assert r.counters.malformed == 1 and r.counters.skipped == 2 and r.observations == 1
    assert store.rrset("ok.example")[0].rdata == "192.0.2.1"


def test_lookups_by_ip_cidr_range_rdata_name_wildcards_and_fences(store: PdnsSQLite) -> None:
    t = {
        ("www.example.com.", 1, "192.0.2.1", ""): [100, 200, 3],
        ("mail.example.com.", 1, "192.0.2.77", ""): [150, 300, 1],
        ("example.com.", 15, "10 mail.example.com.", ""): [100, 400, 5],
        ("alias.example.net.", 5, "www.example.com.", ""): [50, 60, 2],
        ("www.example.org.", 28, "2001:db8::1", ""): [10, 20, 1],
        ("xn--bcher-kva.example.", 1, "192.0.2.200", ""): [500, 600, 1],
    }
    store.write(t)
    names = lambda recs: sorted(r.rrname for r in recs)  # noqa: E731
    assert names(store.rrset("*.example.com")) == ["mail.example.com.", "www.example.com."]
    assert names(store.rrset("www.example.*")) == ["www.example.com.", "www.example.org."]
    assert names(store.rdata_ip(*net_range("192.0.2.0/25"))) == [
        "mail.example.com.",
        "www.example.com.",
    ]
    assert names(store.rdata_ip(*net_range("192.0.2.1", "192.0.2.100"))) == [
        "mail.example.com.", "www.example.com.",
    ]  # fmt: skip
    assert names(store.rdata_ip(*net_range("2001:db8::/32"))) == ["www.example.org."]
    key = ip_key("192.0.2.1")
    assert key is not None and names(store.rdata_ip(key, key)) == ["www.example.com."]
    assert names(store.rdata_name("mail.example.com")) == ["example.com."]
    assert names(store.rdata_name("www.example.com", 5)) == ["alias.example.net."]
    assert names(store.rrset("*.example.com", fences=Fences(last_after=250))) == [
        "mail.example.com."
    ]
    assert names(store.rrset("*.example.com", fences=Fences(first_before=120))) == [
        "www.example.com."
    ]
    assert store.keyword("bücher") == ["xn--bcher-kva.example."]
    assert store.keyword("example.c") == [
        "www.example.com.",
        "mail.example.com.",
        "example.com.",
    ] or set(store.keyword("example.c")) == {
        "www.example.com.",
        "mail.example.com.",
        "example.com.",
    }


def test_keyword_index_after_compaction_reuses_ids(store: PdnsSQLite) -> None:
    store.write({("old-brand.example.", 1, "192.0.2.1", ""): [10, 20, 1],
                 ("zz-brand.example.", 1, "192.0.2.2", ""): [10, 20, 1]})  # fmt: skip
    assert store.compact(25) == (2, 2)  # both gone; the next name may reuse an id
    store.write({("new-brand.example.", 1, "192.0.2.3", ""): [30, 40, 1]})
    assert store.keyword("brand") == ["new-brand.example."]

"""Serials of the zones mamori writes from feeds and datasets, and of DNSBL zones:
they move forward in RFC 1982 serial order, through the wrap."""

from __future__ import annotations

from pathlib import Path

from mamori.dnsutil import serial as rfc1982
from mamori.feeds.publish import rpz as rpz_out
from mamori.policy import zone


def test_feed_zone_serial_wraps_to_zero_after_the_largest_serial(tmp_path: Path) -> None:
    f = tmp_path / "feed.rpz"
    assert rpz_out.write_zone(f, "x.feeds.mamori.", ["a.example CNAME ."]) == (1, True)
    f.write_text(f.read_text().replace(" 1 3600 ", f" {rfc1982.MAX_SERIAL} 3600 "))
    serial, changed = rpz_out.write_zone(f, "x.feeds.mamori.", ["b.example CNAME ."])
    assert (serial, changed) == (0, True)
    assert rfc1982.gt(serial, rfc1982.MAX_SERIAL)
    assert zone.load(f, "x.feeds.mamori.").serial == 0  # a valid SOA serial


def _dnsbl_serial(r: object) -> int:
    import dns.message

    from mamori.feeds.publish.dnsbl import Responder

    assert isinstance(r, Responder)
    q = dns.message.make_query("bl.test.", "SOA")
    out = r.handle(q.to_wire(), ("127.0.0.1", 5000), None, False)
    assert out is not None
    return int(dns.message.from_wire(out).answer[0][0].serial)


def test_dnsbl_serial_moves_forward_when_older_data_is_put_back(tmp_path: Path) -> None:
    import os

    from mamori.config.feeds import DnsblConfig
    from mamori.feeds.publish.dnsbl import Responder

    entries = tmp_path / "ips.entries"
    entries.write_text("# feed spam category spam\nip\t198.51.100.7\n")
    os.utime(entries, (1_700_000_000, 1_700_000_000))
    r = Responder(DnsblConfig(zone="bl.test.", kind="ip"), [entries])
    first = _dnsbl_serial(r)
    assert first == 1_700_000_000
    # Yesterday's copy put back (cp -p, a restore): other content, an older mtime.
    entries.write_text("# feed spam category spam\nip\t198.51.100.8\n")
    os.utime(entries, (1_699_900_000, 1_699_900_000))
    r.checked = float("-inf")  # the next query checks the files
    assert rfc1982.gt(_dnsbl_serial(r), first)

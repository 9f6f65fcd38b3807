"""Reading transfer streams: AXFR form, IXFR sequences (RFC 1995), malformed ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.name
import dns.rdata
import pytest

from mamori.config import Endpoint
from mamori.xfr import client
from mamori.xfr.client import RR

P = Endpoint("127.0.0.1", 53)


def _soa(serial: int) -> RR:
    rd = dns.rdata.from_text("IN", "SOA", f"ns.z. h.z. {serial} 60 30 600 30")
    return dns.name.from_text("z."), 60, rd


def _rr(name: str, target: str = ".") -> RR:
    rd = dns.rdata.from_text("IN", "CNAME", target)
    return dns.name.from_text(name), 60, rd


def _soa_text(serial: int) -> tuple[str, int, int, str]:
    return ("z.", 60, 6, f"ns.z. h.z. {serial} 60 30 600 30")


def test_axfr_form_streams_to_the_spool_file(tmp_path: Path) -> None:
    spool = tmp_path / "z.xfr"
    st = client._Stream("z.", ixfr=False, spool=spool)
    st.add([_soa_text(5), ("a.z.", 60, 5, ".")], P)  # one message
    assert not st.done
    st.add([("b.z.", 60, 1, "192.0.2.1"), _soa_text(5)], P)  # the closing SOA ends it
    assert st.done
    out = asyncio.run(st.result(P))
    assert isinstance(out, client.FullZone) and out.serial == 5 and out.count == 3
    lines = spool.read_text().splitlines()
    assert lines[1] == "$ORIGIN z." and lines[2].startswith("z. 60 IN SOA ns.z. h.z. 5")
    assert lines[3:] == ["a.z. 60 IN CNAME .", "b.z. 60 IN A 192.0.2.1"]


def test_records_after_the_closing_soa_are_an_error(tmp_path: Path) -> None:
    st = client._Stream("z.", ixfr=False, spool=tmp_path / "z.xfr")
    st.add([_soa_text(5), _soa_text(5)], P)
    with pytest.raises(client.TransferError, match="after the closing SOA"):
        st.add([("a.z.", 60, 5, ".")], P)
    st.discard()
    assert not (tmp_path / "z.xfr").exists()


def test_ixfr_stream_and_up_to_date(tmp_path: Path) -> None:
    st = client._Stream("z.", ixfr=True, spool=tmp_path / "z.xfr")
    st.add([_soa_text(3)], P)
    assert st.up_to_date(3) and not st.up_to_date(2)
    st.add(
        [_soa_text(2), ("a.z.", 60, 5, "."), _soa_text(3), ("b.z.", 60, 5, "*."), _soa_text(3)], P
    )
    assert st.done
    out = asyncio.run(st.result(P))
    assert isinstance(out, client.Incremental) and [(d.old, d.new) for d in out.deltas] == [(2, 3)]
    assert not (tmp_path / "z.xfr").exists()  # IXFR form: nothing spooled


def test_ixfr_sequences_become_deltas_in_order() -> None:
    rrs = [
        _soa(3),
        _soa(1), _rr("a.z."), _soa(2), _rr("b.z."),  # 1 -> 2: a deleted, b added
        _soa(2), _soa(3), _rr("c.z."),  # 2 -> 3: c added
        _soa(3),
    ]  # fmt: skip
    out = client._interpret(rrs, 3, P)
    assert isinstance(out, client.Incremental)
    assert [(d.old, d.new) for d in out.deltas] == [(1, 2), (2, 3)]
    assert [r[0].to_text() for r in out.deltas[0].deleted] == ["z.", "a.z."]
    assert [r[0].to_text() for r in out.deltas[1].added] == ["z.", "c.z."]


def test_malformed_ixfr_is_an_error() -> None:
    with pytest.raises(client.TransferError, match="malformed IXFR"):
        client._interpret([_soa(3), _soa(1), _rr("a.z."), _soa(3)], 3, P)


def test_one_soa_at_or_behind_our_serial_is_up_to_date_in_serial_order(tmp_path: Path) -> None:
    """RFC 1995 4 with RFC 1982 order: a primary's SOA not greater than ours."""

    def one_soa(final: int) -> client._Stream:
        s = client._Stream("z.", ixfr=True, spool=tmp_path / "z.xfr")
        s.add([_soa_text(final)], P)
        return s

    assert one_soa(5).up_to_date(5) and one_soa(4).up_to_date(5)
    assert one_soa(0xFFFFFFF0).up_to_date(3)  # 3 is after the wrap
    assert not one_soa(3).up_to_date(0xFFFFFFF0)
    assert one_soa(5 + 2**31).up_to_date(5)  # undefined: not newer (as BIND)

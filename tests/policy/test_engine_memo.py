"""The memo of QNAME decisions in Policy.check_query: per name and RD bit, never per client."""

from __future__ import annotations

from pathlib import Path

import dns.name

from mamori.policy import compiled, engine, zone

SOA = "@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"


def _zone(tmp_path: Path, name: str, body: str) -> zone.LoadedZone:
    f = tmp_path / f"{name}zone"
    f.write_text("$TTL 300\n" + SOA + body)
    return zone.load(f, name)


def _w(name: str) -> bytes:
    return dns.name.from_text(name).to_wire().lower()


def _check(p: engine.Policy, qname: str, client: str = "192.0.2.1") -> tuple[str, str] | None:
    m, _ = p.check_query(client, _w(qname))
    return (m.action.value, m.rule.owner) if m else None


def test_memoised_decision_keeps_rd0_and_rd1_queries_apart(tmp_path: Path) -> None:
    z = _zone(tmp_path, "ro.", "bad.test CNAME .\n")
    p = engine.Policy.from_loaded([z], [engine.ZoneSettings("ro.", recursive_only=True)], 1)
    assert p.check_query("192.0.2.1", _w("bad.test"), rd=False)[0] is None  # memoised first
    assert p.check_query("192.0.2.1", _w("bad.test"), rd=True)[0] is not None
    assert p.check_query("192.0.2.1", _w("bad.test"), rd=False)[0] is None


def test_memoised_decision_still_depends_on_the_client(tmp_path: Path) -> None:
    first = _zone(tmp_path, "clients.", "32.9.2.0.192.rpz-client-ip CNAME rpz-passthru.\n")
    second = _zone(tmp_path, "names.", "bad.test CNAME .\n")
    p = engine.Policy.from_loaded(
        [first, second], [engine.ZoneSettings(first.name), engine.ZoneSettings(second.name)], 1
    )
    assert _check(p, "bad.test", client="192.0.2.1") == ("NXDOMAIN", "bad.test")
    assert _check(p, "bad.test", client="192.0.2.9") == ("PASSTHRU", "32.9.2.0.192.rpz-client-ip")
    assert _check(p, "bad.test", client="192.0.2.1") == ("NXDOMAIN", "bad.test")
    assert p.check_query(None, _w("bad.test"))[0].rule.zone == "names."  # type: ignore[union-attr]


def test_a_full_memo_is_cleared_and_answers_stay_right(tmp_path: Path) -> None:
    z = _zone(tmp_path, "rpz.test.", "*.bad.test CNAME .\nok.bad.test CNAME rpz-passthru.\n")
    p = engine.Policy(
        [compiled.CompiledZone(compiled.compile_zone(z))],
        [engine.ZoneSettings(z.name)],
        1,
        qname_memo=3,
    )
    for _ in range(3):
        for i in range(10):
            assert _check(p, f"n{i}.bad.test") == ("NXDOMAIN", "*.bad.test")
            assert _check(p, "ok.bad.test") == ("PASSTHRU", "ok.bad.test")
            assert _check(p, f"n{i}.good.test") is None

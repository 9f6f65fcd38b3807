"""Response rate limiting: the accounting of rrl.ResponseLimiter, on a fake clock."""

from __future__ import annotations

import logging
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from mamori import config
from mamori.config import RrlConfig
from mamori.errors import ConfigError
from mamori.resolver import rrl as rrl_mod
from mamori.resolver.reply import Stats
from mamori.resolver.rrl import ResponseLimiter, slip_answer

CLIENT = ("192.0.2.7", 5353)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(**settings: object) -> tuple[ResponseLimiter, Stats, Clock]:
    stats, clock = Stats(), Clock()
    return ResponseLimiter(RrlConfig(**settings), stats, clock), stats, clock  # type: ignore[arg-type]


def answer(name: str = "www.example.test", rdtype: str = "A", qid: int = 4242) -> bytes:
    q = dns.message.make_query(name, rdtype, id=qid)
    r = dns.message.make_response(q)
    rdata = "192.0.2.1" if rdtype == "A" else '"text"'
    r.answer.append(dns.rrset.from_text(name + ".", 300, "IN", rdtype, rdata))
    return r.to_wire()


def nodata(name: str, rdtype: str = "AAAA") -> bytes:
    return dns.message.make_response(dns.message.make_query(name, rdtype)).to_wire()


def nxdomain(name: str, zone: str | None = "example.test") -> bytes:
    r = dns.message.make_response(dns.message.make_query(name, "A"))
    r.set_rcode(dns.rcode.NXDOMAIN)
    if zone is not None:
        soa = f"ns.{zone}. host.{zone}. 1 3600 600 86400 60"
        r.authority.append(dns.rrset.from_text(zone + ".", 60, "IN", "SOA", soa))
    return r.to_wire()


def error(name: str, rcode: int = dns.rcode.SERVFAIL) -> bytes:
    r = dns.message.make_response(dns.message.make_query(name, "A"))
    r.set_rcode(rcode)
    return r.to_wire()


def send(lim: ResponseLimiter, resp: bytes, n: int, addr: tuple[str, int] = CLIENT) -> list[str]:
    """What happens to *n* copies of *resp*: "sent", "slipped" or "dropped"."""
    out = []
    for _ in range(n):
        got = lim.check(resp, addr)
        if got is None:
            out.append("dropped")
        elif got == resp:
            out.append("sent")
        else:
            out.append("slipped")
    return out


def test_a_burst_gets_rate_answers_then_dropped_and_slipped_in_turn() -> None:
    lim, stats, _ = limiter(responses_per_second=5, slip=2)
    got = send(lim, answer(), 12)
    assert got == ["sent"] * 5 + ["dropped", "slipped"] * 3 + ["dropped"]
    assert stats.rrl_limited_responses == 7
    assert stats.rrl_slipped_responses == 3
    assert stats.rrl_dropped_responses == 4


@pytest.mark.parametrize(("slip", "slipped"), [(0, 0), (1, 10), (3, 3)])
def test_slip_sends_every_nth_limited_answer_as_tc(slip: int, slipped: int) -> None:
    lim, stats, _ = limiter(responses_per_second=1, slip=slip)
    got = send(lim, answer(), 11)
    assert got[0] == "sent"
    assert got[1:].count("slipped") == slipped
    assert got[1:].count("dropped") == 10 - slipped
    assert stats.rrl_slipped_responses == slipped


def test_the_slipped_answer_is_small_tc_same_id_and_question() -> None:
    resp = answer("www.example.test", "A", qid=777)
    tc = slip_answer(resp)
    m = dns.message.from_wire(tc)
    assert m.id == 777
    assert m.flags & dns.flags.TC and m.flags & dns.flags.QR
    assert m.rcode() == dns.rcode.NOERROR
    assert not m.answer and not m.authority and not m.additional
    assert str(m.question[0]) == "www.example.test. IN A"
    assert len(tc) == 12 + len(m.question[0].name.to_wire()) + 4


def test_credit_accrues_at_the_rate_and_caps_at_one_second() -> None:
    lim, _, clock = limiter(responses_per_second=4, slip=0)
    assert send(lim, answer(), 4) == ["sent"] * 4
    clock.now += 0.5  # two credits back
    assert send(lim, answer(), 3) == ["sent", "sent", "dropped"]
    clock.now += 100  # long idle: never more than one second's worth
    assert send(lim, answer(), 5) == ["sent"] * 4 + ["dropped"]


def test_debt_stops_at_window_times_rate_so_a_flood_is_forgiven_after_window() -> None:
    lim, _, clock = limiter(responses_per_second=2, window=5, slip=0)
    send(lim, answer(), 1000)  # deep in debt: held at -10
    assert lim.accounts[next(iter(lim.accounts))].balance == -10
    clock.now += 4.9
    assert send(lim, answer(), 1) == ["dropped"]
    clock.now += 5.2  # credit again (the dropped one cost one more)
    assert send(lim, answer(), 1) == ["sent"]


def test_identical_means_same_name_and_type_per_prefix() -> None:
    lim, _, _ = limiter(responses_per_second=2, slip=0)
    assert send(lim, answer("a.example.test"), 3) == ["sent", "sent", "dropped"]
    assert send(lim, answer("b.example.test"), 1) == ["sent"]  # another name
    assert send(lim, answer("a.example.test", "TXT"), 1) == ["sent"]  # another type
    assert send(lim, answer("A.EXAMPLE.test"), 1) == ["dropped"]  # case does not matter
    same_24 = ("192.0.2.200", 53)
    assert send(lim, answer("a.example.test"), 1, same_24) == ["dropped"]
    other_24 = ("192.0.3.7", 53)
    assert send(lim, answer("a.example.test"), 1, other_24) == ["sent"]


def test_ipv6_prefix_length_and_ipv4_mapped_clients() -> None:
    lim, _, _ = limiter(responses_per_second=1, slip=0)
    assert send(lim, answer(), 1, ("2001:db8:0:100::1", 53)) == ["sent"]
    assert send(lim, answer(), 1, ("2001:db8:0:1ff::9", 53)) == ["dropped"]  # same /56
    assert send(lim, answer(), 1, ("2001:db8:0:200::1", 53)) == ["sent"]  # next /56
    assert send(lim, answer(), 1, ("192.0.2.1", 53)) == ["sent"]
    assert send(lim, answer(), 1, ("::ffff:192.0.2.99", 53)) == ["dropped"]  # that /24
    assert lim.prefix_text("2001:db8:0:1ff::9") == "2001:db8:0:100::/56"
    assert lim.prefix_text("::ffff:192.0.2.99") == "192.0.2.0/24"


def test_nodata_is_counted_per_name_whatever_the_type() -> None:
    lim, stats, _ = limiter(responses_per_second=2, slip=0)
    got = send(lim, nodata("v4only.example.test", "AAAA"), 2)
    got += send(lim, nodata("v4only.example.test", "MX"), 1)
    assert got == ["sent", "sent", "dropped"]
    assert stats.rrl_dropped_responses == 1


def test_nxdomain_has_its_own_rate_per_zone() -> None:
    lim, stats, _ = limiter(responses_per_second=100, nxdomains_per_second=2, slip=0)
    # random subdomains of one zone: one account (the SOA owner)
    got = [send(lim, nxdomain(f"r{i}.example.test"), 1)[0] for i in range(4)]
    assert got == ["sent", "sent", "dropped", "dropped"]
    assert send(lim, nxdomain("x.other.test", "other.test"), 1) == ["sent"]
    assert send(lim, answer(), 3) == ["sent"] * 3  # answers: their own, larger, rate
    assert stats.rrl_dropped_nxdomains == 2
    assert stats.rrl_limited_responses == 0


def test_nxdomain_without_soa_counts_per_name() -> None:
    lim, _, _ = limiter(responses_per_second=1, slip=0)
    assert send(lim, nxdomain("a.example.test", None), 2) == ["sent", "dropped"]
    assert send(lim, nxdomain("b.example.test", None), 1) == ["sent"]


def test_nxdomain_with_a_compressed_soa_owner_in_the_question() -> None:
    resp = nxdomain("deep.sub.example.test")
    m = dns.message.from_wire(resp)
    assert m.authority  # dnspython compresses the owner to a pointer into the question
    assert rrl_mod._zone_of(resp, 12 + len(m.question[0].name.to_wire()) + 4, len(resp)) == (
        b"\x07example\x04test\x00"
    )


def test_errors_are_counted_per_prefix_whatever_the_name() -> None:
    lim, stats, _ = limiter(responses_per_second=100, errors_per_second=2, slip=0)
    got = send(lim, error("a.test"), 1) + send(lim, error("b.test", dns.rcode.REFUSED), 1)
    got += send(lim, error("c.test", dns.rcode.FORMERR), 1)
    assert got == ["sent", "sent", "dropped"]
    assert stats.rrl_dropped_errors == 1


def test_a_rate_of_zero_leaves_that_kind_unlimited() -> None:
    lim, _, _ = limiter(responses_per_second=0, nxdomains_per_second=1, slip=0)
    assert send(lim, answer(), 50) == ["sent"] * 50
    assert send(lim, error("a.test"), 50) == ["sent"] * 50
    assert send(lim, nxdomain("a.example.test"), 2) == ["sent", "dropped"]


def test_exempt_prefixes_are_never_limited() -> None:
    lim, stats, _ = limiter(responses_per_second=1, exempt=("192.0.2.0/28", "2001:db8::/32"))
    assert send(lim, answer(), 20, ("192.0.2.7", 53)) == ["sent"] * 20
    assert send(lim, answer(), 20, ("2001:db8::1", 53)) == ["sent"] * 20
    assert send(lim, answer(), 2, ("192.0.2.17", 53)) == ["sent", "dropped"]  # not in the /28
    assert stats.rrl_limited_responses == 1


def test_log_only_counts_and_logs_but_sends(caplog: pytest.LogCaptureFixture) -> None:
    lim, stats, _ = limiter(responses_per_second=1, log_only=True)
    with caplog.at_level(logging.WARNING, "mamori.resolver.rrl"):
        assert send(lim, answer(), 10) == ["sent"] * 10
    assert stats.rrl_limited_responses == 9
    assert stats.rrl_dropped_responses == stats.rrl_slipped_responses == 0
    assert "logging only" in caplog.text


def test_one_log_line_per_prefix_and_kind_per_window(caplog: pytest.LogCaptureFixture) -> None:
    lim, _, clock = limiter(responses_per_second=1, window=10)
    with caplog.at_level(logging.WARNING, "mamori.resolver.rrl"):
        send(lim, answer("a.example.test"), 50)
        send(lim, answer("b.example.test"), 50)  # same prefix, same kind
        send(lim, error("c.test"), 50)  # same prefix, errors
        clock.now += 5
        send(lim, answer("a.example.test"), 50)
        clock.now += 6
        send(lim, answer("a.example.test"), 50)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0] == (
        "rrl: limiting 192.0.2.0/24 (responses) for a.example.test./A: over 1/s"
        " (dropping, slip 2; said once per 10 s)"
    )
    assert lines[1].startswith("rrl: limiting 192.0.2.0/24 (errors): over 1/s")


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rrl_mod, "MAX_ENTRIES", 100)
    lim, _, clock = limiter(responses_per_second=1, window=2)
    for i in range(250):
        lim.check(answer(f"n{i}.example.test"), CLIENT)
        assert len(lim.accounts) <= 100
    clock.now += 3.5  # every account back at full credit
    held = len(lim.accounts)
    assert lim.purge(clock.now) == held > 0
    assert not lim.accounts


def test_answers_that_are_not_to_queries_pass() -> None:
    lim, _, _ = limiter(responses_per_second=1)
    notify = bytearray(answer())
    notify[2] = (notify[2] & 0x87) | (4 << 3)  # opcode NOTIFY
    assert send(lim, bytes(notify), 5) == ["sent"] * 5
    assert send(lim, b"\x00\x01", 5) == ["sent"] * 5  # too short to be anything


def test_config_defaults_and_ranges() -> None:
    base = '[upstream]\nservers = ["127.0.0.1:9"]\n'
    cfg = config.loads(base, Path("m.toml"))
    assert not cfg.rrl.enabled
    cfg = config.loads(base + "[rrl]\nresponses_per_second = 5\n", Path("m.toml"))
    r = cfg.rrl
    assert r.enabled and (r.nxdomain_rate, r.error_rate, r.window, r.slip) == (5, 5, 15, 2)
    assert (r.ipv4_prefix_length, r.ipv6_prefix_length, r.exempt, r.log_only) == (24, 56, (), False)
    cfg = config.loads(base + '[rrl]\nnxdomains_per_second = 3\nexempt = ["10.1.2.3/8"]\n',
                       Path("m.toml"))  # fmt: skip
    assert cfg.rrl.enabled and cfg.rrl.responses_per_second == 0 and cfg.rrl.error_rate == 0
    assert cfg.rrl.exempt == ("10.0.0.0/8",)
    for bad in ("window = 0", "window = 3601", "slip = 11", "ipv4_prefix_length = 33",
                "responses_per_second = -1", 'exempt = ["nope"]', "burst = 3"):  # fmt: skip
        with pytest.raises(ConfigError, match=r"rrl"):
            config.loads(base + f"[rrl]\n{bad}\n", Path("m.toml"))

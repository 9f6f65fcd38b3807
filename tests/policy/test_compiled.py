"""Compiled policy zones answer exactly as the LoadedZone dicts they come from."""

from __future__ import annotations

import importlib.util
import ipaddress
import marshal
import mmap
import struct
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.policy import compiled, layout, zone
from mamori.policy.model import Action, LocalRecord, Rule, Trigger
from mamori.policy.rules import COMPLEX_BASE, SIMPLE_CODES, LoadedZone
from mamori.policy.steps import run

ROOT = Path(__file__).resolve().parents[2]
A_REC = LocalRecord(
    dns.rdatatype.A, 60, dns.rdata.from_text("IN", "A", "192.0.2.7", relativize=False)
)


def _wire(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(lb)]) + lb for lb in labels) + b"\x00"


def _suffixes(key: bytes) -> list[bytes]:
    """*key* and every name above it (the root last)."""
    out, i = [key], 0
    while key[i]:
        i += key[i] + 1
        out.append(key[i:])
    return out


def _naive(exact: dict[bytes, int], wild: dict[bytes, int], q: bytes) -> tuple[bytes, bool] | None:
    """The reference, RFC 4592 by brute force: q's own owner; else the wildcard of q's
    closest encloser, the closest name at or above q that exists in the zone (an
    owner -- a wildcard ``*.w`` included -- or a name with an owner below it)."""
    owners = set(exact) | {b"\x01*" + w for w in wild}
    existing = {s for o in owners for s in _suffixes(o)} | {b"\x00"}  # the apex exists
    if q in exact:
        return q, False
    if q[:2] == b"\x01*" and q[2:] in wild:
        return q[2:], True  # the wildcard owner itself asked for
    for s in _suffixes(q):
        if s in existing:  # the closest encloser
            return (s, True) if s != q and s in wild else None
    return None


def _compile(z: LoadedZone, source: str = "") -> compiled.CompiledZone:
    cz = compiled.CompiledZone(compiled.compile_zone(z, source))
    cz.verify()
    return cz


# Labels: a few short common ones (so names nest and wildcards overlap), and any bytes
# (dots, NUL, 0xff, upper case: keys are compared as bytes, never parsed as text).
label = st.one_of(
    st.sampled_from([b"a", b"b", b"xn--c", b"d-1"]), st.binary(min_size=1, max_size=5)
)
name = st.lists(label, min_size=0, max_size=5)
entry = st.tuples(name, st.booleans(), st.sampled_from([*SIMPLE_CODES.values(), -1]))


@settings(max_examples=150, deadline=None)
@given(st.lists(entry, max_size=25), st.lists(st.tuples(name, name), max_size=25))
def test_compiled_qname_lookup_agrees_with_the_loaded_dicts(
    entries: list[tuple[list[bytes], bool, int]], queries: list[tuple[list[bytes], list[bytes]]]
) -> None:
    z = LoadedZone("rpz.test.")
    for labels, wildcard, code in entries:
        key = _wire(labels)  # labels == []: the root ("*" alone when wildcard)
        owner = ".".join(lb.hex() for lb in labels) or "@"
        if code < 0:  # a Local-Data rule (the slow path: serialized, decoded on a hit)
            z.add(Rule(z.name, 0, Trigger.QNAME, owner, Action.LOCAL_DATA, (A_REC,), wildcard, key))
        else:
            (z.wild if wildcard else z.exact)[key] = code
    cz = _compile(z)
    exact, wild = dict(z.exact.items()), dict(z.wild.items())
    names = [
        _wire(p + labels[i:]) for labels, _, _ in entries for p in ([], [b"x"]) for i in (0, 1)
    ]
    names += [_wire(p + q) for p, q in queries]
    for q in names:
        expect = _naive(exact, wild, q)
        got = cz.qname(q)
        assert (got[:2] if got else None) == expect
        if got is not None:
            key, wildcard, code = got
            code0 = (wild if wildcard else exact)[key]
            assert (code >= COMPLEX_BASE) == (code0 >= COMPLEX_BASE)
            assert cz.rule_for(key, wildcard, code) == z.rule_for(key, wildcard, code0)
    assert sorted(k for k, _ in cz.qname_items(False)) == sorted(exact)
    assert sorted(k for k, _ in cz.qname_items(True)) == sorted(wild)
    assert cz.rule_count == z.rule_count
    assert cz.counts[Trigger.QNAME] == len(exact) + len(wild)


def test_root_wildcard_matches_every_name_below_the_root_but_not_the_root() -> None:
    z = LoadedZone("rpz.test.")
    z.wild[b"\x00"] = SIMPLE_CODES[Action.DROP]
    cz = _compile(z)
    assert cz.qname(_wire([b"com"])) == (b"\x00", True, SIMPLE_CODES[Action.DROP])
    assert cz.qname(b"\x00") is None
    assert cz.rule_for(b"\x00", True, 3).owner == "*"


def test_empty_zone_compiles_and_matches_nothing() -> None:
    cz = _compile(LoadedZone("empty.test."))
    assert cz.rule_count == 0 and cz.soa is None and cz.serial == 0
    assert cz.qname(_wire([b"a", b"b"])) is None
    assert cz.nsdname(_wire([b"ns"])) is None
    assert cz.ip_longest(Trigger.CLIENT_IP, 4, 1) is None
    assert cz.rules() == []


prefix = st.one_of(
    st.tuples(st.just(4), st.integers(0, 2**32 - 1), st.sampled_from([8, 16, 23, 24, 31, 32])),
    st.tuples(st.just(6), st.integers(0, 2**128 - 1), st.sampled_from([16, 32, 48, 64, 127, 128])),
)
TRIGGERS = [Trigger.CLIENT_IP, Trigger.RESPONSE_IP, Trigger.NSIP]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(TRIGGERS), prefix), max_size=30),
    st.lists(st.integers(0, 2**32 - 1), max_size=10),
)
def test_ip_longest_prefix_agrees_with_a_naive_model(
    prefixes: list[tuple[Trigger, tuple[int, int, int]]], offsets: list[int]
) -> None:
    z = LoadedZone("rpz.test.")
    nets: dict[tuple[Trigger, ipaddress.IPv4Network | ipaddress.IPv6Network], str] = {}
    for trigger, (version, value, plen) in prefixes:
        bits = 32 if version == 4 else 128
        network = value >> (bits - plen) << (bits - plen)
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = (
            ipaddress.IPv4Network((network, plen))
            if version == 4
            else ipaddress.IPv6Network((network, plen))
        )
        owner = f"{plen}.{net.network_address}.{trigger.name}".lower()
        z.add(Rule(z.name, 0, trigger, owner, Action.NXDOMAIN), net)
        nets[(trigger, net)] = owner  # a later rule for the same prefix replaces it
    cz = _compile(z)
    probes = [(net.version, int(net.network_address) + off) for _, net in nets for off in offsets]
    probes += [(4, o) for o in offsets] + [(6, o << 96) for o in offsets]
    for trigger in TRIGGERS:
        for version, raw in probes:
            value = raw % 2 ** (32 if version == 4 else 128)
            addr = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
            inside = [n for (t, n) in nets if t is trigger and addr in n]
            got = cz.ip_longest(trigger, version, value)
            if not inside:
                assert got is None
                continue
            best = max(inside, key=lambda n: n.prefixlen)
            assert got is not None and got[:2] == (best.prefixlen, int(best.network_address))
            assert cz.other_rule(got[2]).owner == nets[(trigger, best)]


def test_nsdname_exact_beats_wildcard_and_wildcard_needs_a_label_below() -> None:
    z = LoadedZone("rpz.test.")
    for owner, key, wildcard in [
        ("ns.evil.rpz-nsdname", _wire([b"ns", b"evil"]), False),
        ("*.evil.rpz-nsdname", _wire([b"evil"]), True),
    ]:
        z.add(Rule(z.name, 0, Trigger.NSDNAME, owner, Action.NXDOMAIN, (), wildcard, key))
    cz = _compile(z)
    found = cz.nsdname(_wire([b"ns", b"evil"]))
    assert found is not None and cz.other_rule(found).owner == "ns.evil.rpz-nsdname"
    found = cz.nsdname(_wire([b"a", b"ns2", b"evil"]))
    assert found is not None and cz.other_rule(found).owner == "*.evil.rpz-nsdname"
    assert cz.nsdname(_wire([b"evil"])) is None


SOA = "@ SOA ns.example. host.example. 7 3600 600 86400 60\n@ NS ns.example.\n"


def test_metadata_soa_source_and_local_data_survive_compilation(tmp_path: Path) -> None:
    f = tmp_path / "z.rpz"
    f.write_text(
        "$TTL 300\n" + SOA + "bad.example CNAME .\nwalled.example CNAME garden.example.\n"
        "txt.example TXT hello\nbroken.example A 999.1.1.1\n32.1.2.0.192.rpz-ip CNAME *.\n"
    )
    z = zone.load(f, "rpz.test.", on_error="skip")
    cz = _compile(z, source="sha256:abc")
    assert (cz.name, cz.serial, cz.source, cz.simple_ttl) == ("rpz.test.", 7, "sha256:abc", 300)
    assert cz.soa is not None and z.soa is not None and cz.soa.rdata == z.soa.rdata
    assert [r.rdata for r in cz.apex_ns] == [r.rdata for r in z.apex_ns]
    assert cz.skipped == 1 and cz.skipped_reasons == tuple(z.skipped)
    assert cz.counts[Trigger.RESPONSE_IP] == 1 and cz.counts[Trigger.QNAME] == 3

    def view(rules: list[Rule]) -> set[tuple[str, str, str, tuple[str, ...]]]:
        return {
            (r.owner, r.trigger.name, r.action.value, tuple(x.rdata.to_text() for x in r.records))
            for r in rules
        }

    assert view(cz.rules()) == view(z.rules())


# --------------------------------------------------------------- bad buffers
@pytest.fixture
def data() -> bytes:
    z = LoadedZone("rpz.test.")
    for i in range(200):
        z.exact[_wire([b"n%d" % i, b"example"])] = i % 5
    return compiled.compile_zone(z)


def _patched_header(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:40], "truncated compiled zone: 40 bytes"),
        (lambda d: d[:-1], "its header says"),
        (lambda d: d + b"\x00", "its header says"),
        (lambda d: b"NOTMAMOR" + d[8:], "bad magic"),
        (lambda d: _patched_header(d, 8, "<I", 99), "format version 99"),
        (lambda d: _patched_header(d, 12, "<I", 1), "marshal version 1"),
        (lambda d: _patched_header(d, 16, "<I", 3), "other byte order"),
        (lambda d: d[:-3] + bytes([d[-3] ^ 1]) + d[-2:], "checksum mismatch"),
        (lambda d: _patched_header(d, 40, "<Q", 64), "metadata outside the file"),
        (lambda d: _patched_header(d, 20, "<I", 7), "checksum mismatch"),
    ],
    ids=[
        "shorter-than-header",
        "one-byte-short",
        "one-byte-long",
        "magic",
        "format-version",
        "marshal-version",
        "byte-order",
        "metadata-bit-flip",
        "metadata-offset",
        "unused-header-field",
    ],
)
def test_unusable_buffers_raise_one_clear_error(data: bytes, mangle: object, message: str) -> None:
    with pytest.raises(compiled.CompiledZoneError, match=message) as info:
        compiled.CompiledZone(mangle(data))  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_verify_finds_a_flipped_bit_in_the_tables(data: bytes) -> None:
    bad = bytearray(data)
    bad[layout.HEADER_SIZE + 100] ^= 0x10  # inside the QNAME table: the header still checks
    cz = compiled.CompiledZone(bytes(bad))
    with pytest.raises(compiled.CompiledZoneError, match="body checksum mismatch"):
        cz.verify()
    compiled.CompiledZone(data).verify()


def test_file_round_trip_through_a_read_only_mmap(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "rpz.test.mpz"
    f.write_bytes(data)
    with f.open("rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    cz = compiled.CompiledZone(mm)
    cz.verify()
    assert cz.qname(_wire([b"n42", b"example"])) == (_wire([b"n42", b"example"]), False, 2)
    assert cz.qname(_wire([b"n999", b"example"])) is None
    assert cz.crc == compiled.CompiledZone(data).crc
    cz.release()
    mm.close()  # every view over the map released: it closes


def test_a_bad_table_header_raises_and_leaves_the_mmap_closable(
    tmp_path: Path, data: bytes
) -> None:
    meta_off, meta_len = layout.HEAD.unpack_from(data)[6:8]
    sections = marshal.loads(data[meta_off : meta_off + meta_len])["sections"]
    bad = bytearray(data)
    struct.pack_into("=I", bad, sections[3], 1 << 30)  # the 4th table claims 2**30 buckets
    f = tmp_path / "bad.mpz"
    f.write_bytes(bad)
    with f.open("rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    with pytest.raises(compiled.CompiledZoneError, match="bad header or truncated") as info:
        compiled.CompiledZone(mm)
    # Closed while the error (and the half-built zone in its traceback) is still alive,
    # as a caller's except clause does: the tables read before the bad one let go.
    assert info.value.__traceback__ is not None
    mm.close()


def test_compile_steps_yields_every_few_thousand_entries() -> None:
    z = LoadedZone("rpz.test.")
    for i in range(20_000):
        z.exact[b"\x06%06d\x00" % i] = 0
    steps = compiled.compile_steps(z)
    count = 0
    try:
        while True:
            next(steps)
            count += 1
    except StopIteration as done:
        result = done.value
    assert count >= 2 * 20_000 // layout.STEP  # hashing and placing, each in steps
    assert result == compiled.compile_zone(z)  # and the same bytes as in one go


def _feedgen() -> object:
    spec = importlib.util.spec_from_file_location("feedgen", ROOT / "bench/feedgen.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_feed_shaped_zone_compiles_compactly_and_answers_like_the_dicts(tmp_path: Path) -> None:
    gen = _feedgen()
    names: list[str] = gen.make_names(5000)  # type: ignore[attr-defined]
    path = tmp_path / "feed.rpz"
    gen.write_zone(path, names)  # type: ignore[attr-defined]
    z = zone.load(path, "feed.rpz.")
    data = run(compiled.compile_steps(z, "feed"))
    cz = compiled.CompiledZone(data)
    assert cz.rule_count == z.rule_count == 5000
    assert (cz.exact_count, cz.wild_count) == (4500, 500)  # every 10th name a wildcard
    assert len(data) / cz.rule_count < 80  # bytes per rule (the dicts take ~100)
    exact, wild = dict(z.exact.items()), dict(z.wild.items())
    hits = 0
    for n in names[::3]:
        for q in (n, f"x.{n}", f"a.b.{n}", f"{n}-not.example", f"www.{n}.evil"):
            key = dns.name.from_text(q).to_wire()
            got = cz.qname(key)
            assert (got[:2] if got else None) == _naive(exact, wild, key), q
            hits += got is not None
    assert hits > len(names[::3])  # every listed name, and the names below wildcards


def test_compiling_is_deterministic_and_the_crc_names_one_compilation() -> None:
    z = LoadedZone("rpz.test.")
    for i in range(50):
        z.exact[_wire([b"n%d" % i])] = 0
    z.wild[_wire([b"w"])] = 1
    data = compiled.compile_zone(z, "one")
    assert compiled.compile_zone(z, "one") == data  # same zone, same bytes
    one = compiled.CompiledZone(data)
    assert one.crc != compiled.CompiledZone(compiled.compile_zone(z, "two")).crc
    assert struct.unpack_from("<I", data, layout.HEAD.size - 4)[0] == one.crc

"""Geo databases written by the tests: an iptoasn TSV and MaxMind DB files (mmdb-writer),
with the same documentation-range networks and made-up ASNs (RFC 5737, RFC 3849, RFC 5398)."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet

# (network, first, last, AS number, AS name, country)
NETS = [
    ("192.0.2.0/25", "192.0.2.0", "192.0.2.127", 64500, "EXAMPLE-HOSTING", "JP"),
    ("192.0.2.128/25", "192.0.2.128", "192.0.2.255", 64501, "OTHER-NET", "DE"),
    ("198.51.100.0/24", "198.51.100.0", "198.51.100.255", 64500, "EXAMPLE-HOSTING", "JP"),
    ("2001:db8::/33", "2001:db8::", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff", 64500,
     "EXAMPLE-HOSTING", "JP"),
    ("203.0.113.0/24", "203.0.113.0", "203.0.113.255", 64502, "BULLETPROOF-LTD", "RU"),
]  # fmt: skip


def write_tsv(path: Path) -> Path:
    """``ip2asn-combined.tsv`` lines, with a "Not routed" range (AS 0, country None)."""
    lines = [f"{lo}\t{hi}\t{asn}\t{cc}\t{name}" for _n, lo, hi, asn, name, cc in NETS]
    lines.append("100.64.0.0\t100.127.255.255\t0\tNone\tNot routed")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_asn_mmdb(path: Path) -> Path:
    """A GeoLite2-ASN-shaped database (autonomous_system_number / _organization)."""
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    for net, _lo, _hi, asn, name, _cc in NETS:
        w.insert_network(
            IPSet([net]),
            {"autonomous_system_number": MmdbU32(asn), "autonomous_system_organization": name},
        )
    w.to_db_file(str(path))
    return path


def write_country_mmdb(path: Path) -> Path:
    """A GeoLite2-Country-shaped database (country.iso_code, registered_country)."""
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    for net, _lo, _hi, _asn, _name, cc in NETS:
        w.insert_network(
            IPSet([net]),
            {"country": {"iso_code": cc, "names": {"en": cc}},
             "registered_country": {"iso_code": cc}},
        )  # fmt: skip
    w.to_db_file(str(path))
    return path

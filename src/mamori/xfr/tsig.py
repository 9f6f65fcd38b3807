"""TSIG keys (RFC 8945) from the config's ``name:algorithm:base64secret``."""

from __future__ import annotations

import dns.name
import dns.tsig

from mamori.config import TsigSpec


def keyring(spec: TsigSpec) -> tuple[dict[dns.name.Name, dns.tsig.Key], dns.name.Name]:
    """A one-key keyring and the key's name, for dnspython's use_tsig/from_wire."""
    name = dns.name.from_text(spec.name)
    key = dns.tsig.Key(name, spec.secret, dns.name.from_text(spec.algorithm))
    return {name: key}, name

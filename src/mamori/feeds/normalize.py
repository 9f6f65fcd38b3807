"""Normalising what feeds list: names to lowercase A-labels, URLs to hosts, IPs apart.

A feed line's token becomes one ``Entry`` (a domain, a ``*.`` wildcard, an IP
address or a CIDR network) or is rejected with a reason. Names are checked as
DNS would (label and name lengths, letters/digits/hyphens/underscores) after
IDNA (UTS 46) conversion, so ``Bücher.example`` and ``xn--bcher-kva.example``
are the same entry. Names ending in an RPZ trigger label (``rpz-ip``,
``rpz-nsdname`` ...) and ``/0`` networks are rejected: a policy zone cannot
hold them as what they are.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import idna

KINDS = ("domain", "wildcard", "ip", "cidr", "client")
# Last labels that make an RPZ owner another trigger than a QNAME (RPZ draft section 4).
TRIGGER_LABELS = ("rpz-ip", "rpz-nsip", "rpz-client-ip", "rpz-nsdname")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class RejectedError(ValueError):
    """A token that is not a usable name or address; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing a feed lists (or allows).

    *kind* ``domain`` is the name itself, ``wildcard`` the names below it (RPZ
    ``*.name``), ``ip``/``cidr`` an answer address or network (RPZ
    Response-IP), ``client`` a client network (RPZ Client-IP: every query from
    it; value ``192.0.2.0/24``, ``127.0.0.1/32``). *modifiers* are the adblock
    modifiers that change what the entry means (``feeds.modifiers``, canonical
    text such as ``dnstype=AAAA,important``; "" for none): part of the
    entry's identity, unlike the provenance fields.
    """

    kind: str  # one of KINDS
    value: str  # "example.com" (wildcard: the name below "*."), "192.0.2.1", "192.0.2.0/24"
    # Provenance the source gives (not part of the entry's identity):
    reason: str = field(default="", compare=False)  # e.g. "malware_download", an event title
    reference: str = field(default="", compare=False)  # e.g. a URL or an indicator id
    modifiers: str = ""  # canonical adblock modifiers (feeds.modifiers), "" for none


def entry(token: str, reason: str = "", reference: str = "") -> Entry:
    """The entry a feed token stands for, or RejectedError."""
    text = token.strip().strip(".") if token.strip() not in (".", "") else ""
    if not text:
        raise RejectedError("empty")
    if _URL.match(text):
        text = url_host(text).strip(".")
        if not text:
            raise RejectedError(f"URL without a host: {token.strip()!r}")
    ip = _ip(text)
    if ip is not None:
        return Entry(ip.kind, ip.value, reason, reference) if reason or reference else ip
    if text.startswith("*."):
        return Entry("wildcard", name(text[2:]), reason, reference)
    return Entry("domain", name(text), reason, reference)


def url_host(url: str) -> str:
    """``https://user@Host.example:8080/path?q`` -> ``Host.example``."""
    rest = _URL.sub("", url, count=1)
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = host.rsplit("@", 1)[-1]
    if host.startswith("["):  # [IPv6]:port
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def name(raw: str) -> str:
    """A DNS name in lowercase A-labels, without the final dot; RejectedError if invalid."""
    text = raw.strip().rstrip(".")
    if not text:
        raise RejectedError("empty name")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise RejectedError(f"not a valid internationalised name: {e}") from None
    text = text.lower()
    if len(text) > 253:
        raise RejectedError("name longer than 253 characters")
    labels = text.split(".")
    if len(labels) < 2:
        raise RejectedError("a single label (a TLD?) is not listed")
    if labels[-1] in TRIGGER_LABELS:
        raise RejectedError(
            f"{labels[-1]} is an RPZ trigger label: in a policy zone the name would be"
            " another kind of rule"
        )
    for label in labels:
        if not _LABEL.match(label):
            raise RejectedError(f"bad label {label!r}")
    return text


def _ip(text: str) -> Entry | None:
    if not text or (":" not in text and not text[-1].isdigit()):
        return None  # a name (ends with a letter TLD): skip the costly failed parse
    try:
        if "/" not in text:
            return Entry("ip", str(ipaddress.ip_address(text)))
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if net.num_addresses == 1:
        return Entry("ip", str(net.network_address))
    if net.prefixlen == 0:  # RPZ prefixes are 1-32 / 1-128 long
        raise RejectedError(f"{net} is every address, not a network to list")
    return Entry("cidr", str(net))

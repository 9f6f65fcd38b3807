"""Adblock rule modifiers (``$important,dnstype=AAAA``), as AdGuard's DNS filtering syntax says.

Source: AdGuard DNS knowledge base, "DNS filtering rules syntax"
(https://adguard-dns.io/kb/general/dns-filtering-syntax/), section "Rule
modifiers". A rule with a modifier that page says nothing about must be
ignored whole; ``all``, ``document`` and ``doc`` are accepted as well (they
name the host's own pages, which a DNS block covers, and AdGuard's engine
matches a DNS query as a document request).

``parse`` reads the text after ``$``; ``Modifiers.text`` is the canonical
form kept with an entry (``Entry.modifiers``) and ``Modifiers.of`` reads it
back. What mamori cannot apply raises ``NotAppliedError`` with a named reason
(counted as skipped); a malformed value raises ``RejectedError``.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

import dns.rdatatype

from mamori.feeds.normalize import RejectedError, name

WHOLE_HOST = ("all", "document", "doc")  # content types that include the host's pages


class NotAppliedError(Exception):
    """A valid rule mamori does not apply; the message is the reason shown and counted."""


@dataclass(frozen=True)
class Modifiers:
    """The DNS-relevant modifiers of one rule.

    *qtypes*: DNS types (RFC 1035 TYPE values, sorted) of ``$dnstype``;
    *negated*: they are excluded (``~A|~CNAME``) rather than the only ones;
    *denyallow*: names (lowercase A-labels, sorted) whose subtrees the rule
    leaves out; *clients*: ``$client`` networks (``ipaddress`` text).
    """

    important: bool = False
    badfilter: bool = False
    qtypes: tuple[int, ...] = ()
    negated: bool = False
    denyallow: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()

    @property
    def rank(self) -> int:
        """Priority of a block (rank of an exception: +1): important > plain (AdGuard)."""
        return 2 if self.important else 0

    def admits(self, qtype: int) -> bool:
        """Does the rule apply to queries of *qtype*?"""
        if not self.qtypes:
            return True
        return (qtype in self.qtypes) != self.negated

    def admits_others(self) -> bool:
        """Does it apply to the types its ``$dnstype`` does not name?"""
        return not self.qtypes or self.negated

    def excludes(self, qname: str) -> bool:
        """Does ``$denyallow`` leave *qname* (and so its subtree) out?"""
        return any(qname == d or qname.endswith("." + d) for d in self.denyallow)

    def text(self) -> str:
        """Canonical text for ``Entry.modifiers`` (important, dnstype, denyallow)."""
        parts = []
        if self.denyallow:
            parts.append("denyallow=" + "|".join(self.denyallow))
        if self.qtypes:
            tilde = "~" if self.negated else ""
            parts.append(
                "dnstype="
                + "|".join(
                    tilde + dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t))
                    for t in self.qtypes
                )
            )
        if self.important:
            parts.append("important")
        return ",".join(parts)

    @classmethod
    def of(cls, text: str) -> Modifiers:
        """The modifiers of an entry's canonical text ("" -> none; memoised)."""
        return _of(text) if text else _NONE


_NONE = Modifiers()


@functools.lru_cache(maxsize=4096)
def _of(text: str) -> Modifiers:
    return parse(text)


def parse(text: str) -> Modifiers:
    """The modifiers after ``$`` in a rule.

    NotAppliedError (named reason) for a modifier that is not for DNS or that
    mamori does not apply; RejectedError for a malformed value.
    """
    important = badfilter = negated = False
    qtypes: tuple[int, ...] = ()
    denyallow: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    for raw in split(text, ","):
        option = raw.strip()
        key, eq, value = option.partition("=")
        key = key.strip().lower()
        if key == "important" and not eq:
            important = True
        elif key == "badfilter" and not eq:
            badfilter = True
        elif key in WHOLE_HOST and not eq:
            continue
        elif key == "dnstype" and eq:
            qtypes, negated = _dnstype(value)
        elif key == "denyallow" and eq:
            denyallow = _denyallow(value)
        elif key == "client" and eq:
            clients = _clients(value)
        elif key == "ctag":
            raise NotAppliedError("$ctag: mamori has no client tags (AdGuard Home's)")
        elif key == "dnsrewrite":
            raise NotAppliedError("$dnsrewrite: rewritten answers are not applied from feeds")
        elif key == "domain":
            raise NotAppliedError("$domain: a rule for some web pages only (not for DNS)")
        else:
            raise NotAppliedError(f"${key.lstrip('~')}: not a DNS modifier")
    return Modifiers(important, badfilter, qtypes, negated, denyallow, clients)


def _dnstype(value: str) -> tuple[tuple[int, ...], bool]:
    """$dnstype=A|~B: AdGuard ignores the excluded types when some are included."""
    wanted: set[int] = set()
    excluded: set[int] = set()
    for item in value.split("|"):
        neg = item.strip().startswith("~")
        text = item.strip().lstrip("~").strip()
        try:
            qtype = int(dns.rdatatype.from_text(text))
        except (dns.rdatatype.UnknownRdatatype, ValueError):
            raise RejectedError(f"$dnstype: {text!r} is not a DNS type") from None
        (excluded if neg else wanted).add(qtype)
    if wanted:
        return tuple(sorted(wanted)), False
    return tuple(sorted(excluded)), True


def _denyallow(value: str) -> tuple[str, ...]:
    out = set()
    for item in value.split("|"):
        text = item.strip()
        if text.startswith("~") or "*" in text:
            raise RejectedError(f"$denyallow: {text!r} is not a domain name")
        out.add(name(text))
    return tuple(sorted(out))


def _clients(value: str) -> tuple[str, ...]:
    """$client networks; NotAppliedError for names and exclusions (``~``)."""
    out = []
    for item in split(value, "|"):
        text = item.strip()
        if text.startswith("~"):
            raise NotAppliedError("$client=~...: rules that leave clients out are not applied")
        if text[:1] in ("'", '"'):
            raise NotAppliedError("$client by name: mamori names no clients in feeds")
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise NotAppliedError("$client by name: mamori names no clients in feeds") from None
        out.append(str(net))
    return tuple(sorted(set(out)))


def split(text: str, sep: str) -> list[str]:
    """*text* split at *sep*, except inside quotes or after a backslash (``$client`` names)."""
    out, cur = [], []
    quote = ""
    escaped = False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            cur.append(ch)
            escaped = True
        elif quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            cur.append(ch)
            quote = ch
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out

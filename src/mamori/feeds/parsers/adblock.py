"""Adblock / AdGuard / uBlock lists, read as AdGuard's DNS filtering rules syntax says.

Source: AdGuard DNS knowledge base, "DNS filtering rules syntax"
(https://adguard-dns.io/kb/general/dns-filtering-syntax/); the conformance
table in docs/reference/feeds.md says what each form does here.

* ``||example.org^`` the name and every name below it; ``|example.org^`` and
  a bare ``example.org`` the name alone; ``||*.example.org^`` or
  ``*.example.org`` the names below it only. ``@@`` makes any of them an
  exception (allow rule). ``/*`` at the end means ``^`` (as AdGuard's engine);
  a pattern without its end (``||example.org``) is read as if it had it.
* ``/etc/hosts`` lines (``0.0.0.0 example.org``) block the names, exactly (as
  Private AdGuard DNS does; AdGuard Home would answer the address instead).
* Modifiers (``feeds.modifiers``): ``$important``, ``$dnstype``,
  ``$denyallow`` are kept with the entries and applied when the feed is
  compiled (``feeds.precedence``); ``$badfilter`` cancels the identical rule
  of the list; ``$client`` with addresses on a rule for every name
  (``||*^$client=192.0.2.0/24``) becomes a Client-IP rule.
* Skipped with a named reason (counted, ``mamori feeds show``): cosmetic and
  scripting rules (``##``, ``#@#``, ``#?#``, ``#$#``, ``#%#``), HTML filtering
  (``$$``, ``$@$``), URL rules (a scheme, a path or a port), patterns open at
  the start (``example.org^`` also matches ``badexample.org``), regular
  expressions (``/.../``: an RPZ zone has none), ``*`` inside a name, modifiers
  that are not for DNS (``$third-party``, ``$domain`` ...: AdGuard ignores
  such a rule whole), ``$ctag``, ``$dnsrewrite``, ``$client`` by name or with
  ``~``, and ``$client`` on a rule for some names only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mamori.feeds import modifiers, precedence
from mamori.feeds.modifiers import Modifiers, NotAppliedError
from mamori.feeds.normalize import Entry, RejectedError, entry
from mamori.feeds.parsers.base import ParseResult
from mamori.feeds.parsers.hosts import LOCAL_NAMES

# Cosmetic and scripting rules: ##, #@#, #?#, #@?#, #$#, #@$#, #$?#, #@$?#, #%#, #@%#
_COSMETIC = re.compile(r"#(@)?(\$\?|\?|\$|%)?#")
_COSMETIC_KIND = {
    None: "element hiding rule (##)",
    "?": "extended CSS rule (#?#)",
    "$": "CSS injection rule (#$#)",
    "$?": "CSS injection rule (#$#)",
    "%": "JavaScript rule (#%#)",
}
_REGEX = re.compile(r"^/.*/(\$[^/]*)?$")


@dataclass
class _Rule:
    no: int
    text: str
    allow: bool
    entries: list[Entry]
    mods: Modifiers

    def identity(self) -> tuple[object, ...]:
        """What ``$badfilter`` compares: the rule without its badfilter modifier."""
        names = tuple(sorted((e.kind, e.value) for e in self.entries))
        return self.allow, names, self.mods.text(), self.mods.clients


def parse(lines: Iterable[str]) -> ParseResult:
    """Entries (blocks) and exceptions of an adblock list, with their modifiers."""
    out = ParseResult()
    rules: list[_Rule] = []
    for no, raw in enumerate(lines, 1):
        out.lines = no
        text = raw.strip()
        if not text or text.startswith(("!", "[")):
            continue
        if not _comment(text) and out.reject_bad_bytes(no, text):
            continue
        try:
            rule = _rule(no, text)
        except NotAppliedError as s:
            out.skipped.append((no, text, str(s)))
            continue
        except RejectedError as r:
            out.rejected.append((no, text, str(r)))
            continue
        if rule is not None:
            rules.append(rule)
    for rule in _apply_badfilter(rules, out):
        (out.exceptions if rule.allow else out.entries).extend(rule.entries)
    conflicts = precedence.client_conflicts(out.entries, out.exceptions)
    if conflicts:
        _drop_clients(rules, conflicts, out)
    out.skipped.sort(key=lambda s: s[0])
    return out


def _apply_badfilter(rules: list[_Rule], out: ParseResult) -> list[_Rule]:
    """The rules left once every ``$badfilter`` rule has cancelled its identical rule."""
    bad = {r.identity(): r for r in rules if r.mods.badfilter}
    kept = []
    for r in rules:
        if r.mods.badfilter:
            out.skipped.append((r.no, r.text, "$badfilter: cancels the identical rule"))
        elif r.identity() in bad:
            out.skipped.append(
                (r.no, r.text, f"cancelled by $badfilter (line {bad[r.identity()].no})")
            )
        else:
            kept.append(r)
    return kept


def _drop_clients(
    rules: list[_Rule], conflicts: list[tuple[Entry, bool, str]], out: ParseResult
) -> None:
    """Move the Client-IP rules RPZ cannot apply as AdGuard does to the skipped lines."""
    for e, allow, why in conflicts:
        (out.exceptions if allow else out.entries).remove(e)
        line = next((r for r in rules if r.allow == allow and e in r.entries), None)
        out.skipped.append((line.no if line else 0, line.text if line else e.value, why))


def _comment(text: str) -> bool:
    """A ``#`` comment line (hosts style), not a cosmetic rule starting ``##``/``#@#``."""
    if not text.startswith("#"):
        return False
    cosmetic = _COSMETIC.search(text)
    return cosmetic is None or cosmetic.start() != 0


def _rule(no: int, text: str) -> _Rule | None:
    """One line as a rule; None for a comment. NotAppliedError / RejectedError otherwise."""
    if _comment(text):
        return None
    cosmetic = _COSMETIC.search(text)
    hosts = _hosts_line(no, text)
    if hosts is not None:
        return hosts
    allow = text.startswith("@@")
    body = text[2:] if allow else text
    if _REGEX.match(body):
        raise NotAppliedError("regular expression rule (an RPZ zone has none)")
    if "$$" in text or "$@$" in text:
        raise NotAppliedError("HTML filtering rule ($$)")
    if cosmetic is not None:
        kind = _COSMETIC_KIND[cosmetic.group(2)]
        if cosmetic.group(1):
            kind = kind.replace(" rule", " exception").replace("(#", "(#@")
        raise NotAppliedError(kind)
    pattern, dollar, options = body.rpartition("$") if "$" in body else (body, "", "")
    mods = modifiers.parse(options) if dollar else Modifiers()
    return _Rule(no, text, allow, _entries(pattern.strip(), mods, allow), mods)


def _hosts_line(no: int, text: str) -> _Rule | None:
    """An ``/etc/hosts`` line (address, names): exact blocks of the names."""
    fields = text.split("#", 1)[0].split()
    if len(fields) < 2:
        return None
    try:
        ipaddress.ip_address(fields[0].split("%", 1)[0])
    except ValueError:
        return None
    names = [n for n in fields[1:] if n.lower() not in LOCAL_NAMES]
    if not names:
        raise NotAppliedError("hosts line for a loopback/local name")
    entries = []
    for n in names:
        e = entry(n)
        if e.kind != "domain":
            raise RejectedError(f"{n}: a hosts line lists names")
        entries.append(e)
    return _Rule(no, text, False, entries, Modifiers())


def _entries(pattern: str, mods: Modifiers, allow: bool) -> list[Entry]:
    """The entries a network rule's pattern stands for, with its modifiers."""
    p = pattern[:-2] + "^" if pattern.endswith("/*") else pattern
    anchor = "||" if p.startswith("||") else "|" if p.startswith("|") else ""
    p = p[len(anchor) :]
    if "://" in p or p.lower().startswith(("http:", "https:", "ws:", "wss:")):
        raise NotAppliedError("URL rule with a scheme (not a DNS rule)")
    closed = False
    for end in ("^|", "^", "|"):
        if p.endswith(end):
            p, closed = p[: -len(end)], True
            break
    if closed and not anchor and not p.startswith("*."):
        raise NotAppliedError("pattern open at the start (it matches inside longer names)")
    if "/" in p or "^" in p or "?" in p or "=" in p:
        raise NotAppliedError("URL rule with a path (not a DNS rule)")
    if p.count(":") == 1:
        raise NotAppliedError("URL rule with a port (not a DNS rule)")
    every = p in ("", "*")
    if mods.clients:
        return _client_entries(every, mods)
    if every:
        raise NotAppliedError("rule for every name: applied only with $client=address")
    below_only = p.startswith("*.")
    if "*" in (p[2:] if below_only else p):
        raise NotAppliedError("'*' inside a name (an RPZ owner cannot say it)")
    e = entry(p)
    text = mods.text()
    if e.kind in ("ip", "cidr"):
        if mods.qtypes or mods.denyallow:
            raise NotAppliedError("$dnstype/$denyallow on an address rule (Response-IP)")
        return [Entry(e.kind, e.value, modifiers=text)]
    if below_only or e.kind == "wildcard":
        return [Entry("wildcard", e.value, modifiers=text)]
    out = [Entry("domain", e.value, modifiers=text)]
    if anchor == "||":
        out.append(Entry("wildcard", e.value, modifiers=text))
    return out


def _client_entries(every: bool, mods: Modifiers) -> list[Entry]:
    if not every:
        raise NotAppliedError(
            "$client on a rule for some names (an RPZ zone has no rule for some names"
            " from some clients)"
        )
    if mods.qtypes or mods.denyallow:
        raise NotAppliedError("$client with $dnstype/$denyallow (a Client-IP rule has neither)")
    text = "important" if mods.important else ""
    return [Entry("client", c, modifiers=text) for c in mods.clients]

"""Compiled policy: every zone's rules in indexes built whole and swapped whole.

Checks before resolution (``check_query``: Client-IP, QNAME) and after it
(``check_late``: Response-IP, NSDNAME, NSIP, which need the answer or the
name servers of the queried name's zone):

* zones in configured order, the first zone with a match wins;
* inside a zone, Client-IP > QNAME > Response-IP > NSDNAME > NSIP (BIND 9 ARM);
  so a QNAME match in zone k is final at once only when no zone before k has
  Response-IP, NSDNAME or NSIP rules (``late_before``);
* QNAME: an exact owner beats a wildcard, a closer wildcard beats a farther one;
  ``*.example`` matches names below ``example`` but not ``example`` itself;
* Client-IP: longest prefix wins inside a zone;
* PASSTHRU stops evaluation of later zones;
* a zone with policy ``disabled`` only logs what it would have done, and
  evaluation continues with the next zone.

Names are handled as lowercased uncompressed wire bytes (the resolver's cache
key prefix), so a QNAME probe is a dict lookup with no parsing. Rule and
Match objects for QNAME rules are built on the first hit and memoised.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori.policy.model import Action, LocalRecord, Match, Rule, Trigger
from mamori.policy.rules import LoadedZone

_NO_MATCH: tuple[None, list[Match]] = (None, [])
OVERRIDES = ("given", "disabled", "passthru", "drop", "tcp-only", "nxdomain", "nodata")


@dataclass(frozen=True)
class ZoneSettings:
    name: str
    policy: str = "given"  # one of OVERRIDES or "cname:TARGET"
    log: bool = True
    max_policy_ttl: int = 0  # 0 = TTLs of the zone as given
    recursive_only: bool = False  # True: rules do not apply to RD=0 queries
    nsdname_enable: bool = True
    nsip_enable: bool = True


_OVERRIDE_ACTION = {
    "passthru": Action.PASSTHRU,
    "drop": Action.DROP,
    "tcp-only": Action.TCP_ONLY,
    "nxdomain": Action.NXDOMAIN,
    "nodata": Action.NODATA,
}


class _IpIndex:
    """Longest-prefix match for one zone: {prefixlen: {network int: match}}."""

    def __init__(self, items: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Match]]):
        self.v4: dict[int, dict[int, Match]] = {}
        self.v6: dict[int, dict[int, Match]] = {}
        for net, match in items:
            table = self.v4 if net.version == 4 else self.v6
            table.setdefault(net.prefixlen, {})[int(net.network_address)] = match
        self.v4_lens = sorted(self.v4, reverse=True)
        self.v6_lens = sorted(self.v6, reverse=True)

    def lookup(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Match | None:
        found = self.longest(addr.version, int(addr))
        return found[2] if found else None

    def longest(self, version: int, value: int) -> tuple[int, int, Match] | None:
        """(prefix length, network, match) of the longest prefix containing *value*."""
        if version == 4:
            bits, table, lens = 32, self.v4, self.v4_lens
        else:
            bits, table, lens = 128, self.v6, self.v6_lens
        for plen in lens:
            network = value & (((1 << plen) - 1) << (bits - plen))
            match = table[plen].get(network)
            if match is not None:
                return plen, network, match
        return None


def _best(idx: _IpIndex, addrs: tuple[tuple[int, int], ...]) -> Match | None:
    """The match of the longest prefix containing one of *addrs* (then smallest network)."""
    best: tuple[int, int, Match] | None = None
    for version, value in addrs:
        found = idx.longest(version, value)
        if found and (best is None or (found[0], -found[1]) > (best[0], -best[1])):
            best = found
    return best[2] if best else None


class _NameIndex:
    """NSDNAME rules of one zone: exact and wildcard name server names."""

    def __init__(self) -> None:
        self.exact: dict[bytes, Match] = {}
        self.wild: dict[bytes, Match] = {}

    def lookup(self, name: bytes) -> Match | None:
        match = self.exact.get(name)
        if match is not None or not self.wild:
            return match
        i = 0
        while name[i]:  # closest "*.parent" first; "*.x" does not match "x"
            i += name[i] + 1
            match = self.wild.get(name[i:])
            if match is not None:
                return match
        return None


class Policy:
    """All policy zones, ready to answer "does this query match?"."""

    def __init__(
        self,
        zones: list[LoadedZone],
        settings: list[ZoneSettings],
        version: int,
        held: tuple[LoadedZone, ...] = (),
    ) -> None:
        self.version = version
        self.zones = zones
        # Zones loaded only to be published (not applied): the publisher's.
        self.held = held
        self.settings = settings
        self.soa = [z.soa for z in zones]
        self.client_ip: list[_IpIndex | None] = []
        self.response_ip: list[_IpIndex | None] = []
        self.nsip: list[_IpIndex | None] = []
        self.nsdname: list[_NameIndex | None] = []
        for zi, z in enumerate(zones):
            items = [
                (net, self._match(dataclasses.replace(r, zone_index=zi)))
                for net, r in z.ip_rules.get(Trigger.CLIENT_IP, [])
            ]
            self.client_ip.append(_IpIndex(items) if items else None)
            resp = [
                (net, self._match(dataclasses.replace(r, zone_index=zi)))
                for net, r in z.ip_rules.get(Trigger.RESPONSE_IP, [])
            ]
            self.response_ip.append(_IpIndex(resp) if resp else None)
            st = settings[zi]
            nsip = [
                (net, self._match(dataclasses.replace(r, zone_index=zi)))
                for net, r in z.ip_rules.get(Trigger.NSIP, [])
            ]
            self.nsip.append(_IpIndex(nsip) if nsip and st.nsip_enable else None)
            nsd = _NameIndex()
            for r in z.other:
                if r.trigger is Trigger.NSDNAME and st.nsdname_enable:
                    table = nsd.wild if r.wildcard else nsd.exact
                    table[r.match_key] = self._match(dataclasses.replace(r, zone_index=zi))
            self.nsdname.append(nsd if nsd.exact or nsd.wild else None)
        n = len(zones)
        # First zone with a Response-IP / NS trigger (n: none), and with an NS trigger.
        self.first_late = next(
            (i for i in range(n) if self.response_ip[i] or self.nsip[i] or self.nsdname[i]), n
        )
        self.first_ns = next((i for i in range(n) if self.nsip[i] or self.nsdname[i]), n)
        self.nzones = n
        self.has_ns = self.first_ns < n
        self.recursive_only = tuple(st.recursive_only for st in settings)
        self.has_recursive_only = any(self.recursive_only)
        self.has_client_ip = any(x is not None for x in self.client_ip)
        self.has_response_ip = any(x is not None for x in self.response_ip)
        # The decision depends on the query name only: no Client-IP rules, no
        # log-only zones. The resolver may then memoise it per name.
        self.by_name_only = not self.has_client_ip and all(
            st.policy != "disabled" for st in settings
        )
        self.hits = [0] * n  # rewrites per zone (counted by the resolver)
        self.rule_count = sum(z.rule_count for z in zones)
        self._client_memo: dict[str, list[Match | None]] = {}
        self._qname_memo: dict[tuple[int, bytes, bool], Match] = {}

    @property
    def all_zones(self) -> list[LoadedZone]:
        """The applied zones, then those only held for publishing."""
        return [*self.zones, *self.held]

    def __len__(self) -> int:
        return self.rule_count

    def __bool__(self) -> bool:
        return True  # a policy with no rules (yet) is still a policy, not "no policy"

    # ----------------------------------------------------------------- checks
    def check_query(
        self, client: str | None, qname: bytes, rd: bool = True
    ) -> tuple[Match | None, list[Match]]:
        """First effective match for a query, and the disabled zones' matches before it.

        *qname* is the lowercased wire name; *client* None checks QNAME rules
        only (names later in a CNAME chain). With *rd* False (an RD=0 query)
        zones set to ``recursive_only`` are left out.
        """
        clients = self._client_candidates(client) if self.has_client_ip and client else None
        logged: list[Match] | None = None
        skip = None if rd or not self.has_recursive_only else self.recursive_only
        for zi, z in enumerate(self.zones):
            if skip and skip[zi]:
                continue
            match = clients[zi] if clients else None  # Client-IP beats QNAME in one zone
            if match is None:
                code = z.exact.get(qname)
                if code is not None:
                    match = self._qname_match(zi, qname, False, code)
                elif z.wild:
                    i = 0
                    while qname[i]:  # each parent: "*.parent" matches; closest first
                        i += qname[i] + 1
                        code = z.wild.get(qname[i:])
                        if code is not None:
                            match = self._qname_match(zi, qname[i:], True, code)
                            break
                if match is None:
                    continue
            if match.disabled:
                logged = [*(logged or []), match]
                continue
            return match, logged or []
        return (None, logged) if logged else _NO_MATCH

    def late_before(self, limit: int) -> bool:
        """Could a Response-IP/NSDNAME/NSIP rule in a zone before *limit* apply?"""
        return self.first_late < limit

    def needs_ns(self, limit: int) -> bool:
        """Is the NS data of the name needed to decide for zones before *limit*?"""
        return self.first_ns < limit

    def check_late(
        self,
        addrs: tuple[tuple[int, int], ...],
        ns_names: tuple[bytes, ...],
        ns_addrs: tuple[tuple[int, int], ...],
        limit: int,
        rd: bool = True,
    ) -> tuple[Match | None, list[Match]]:
        """Response-IP, NSDNAME, NSIP in zones before *limit*, in zone order.

        *addrs*: (IP version, int) of the answer's A/AAAA records; *ns_names*:
        lowercased wire names of the name servers of the name's zone and its
        parent zones; *ns_addrs*: their addresses. Inside a zone Response-IP
        beats NSDNAME beats NSIP; for IP triggers the longest prefix wins, then
        the smallest network. Returns the effective match and the disabled
        zones' matches met before it.
        """
        logged: list[Match] = []
        skip = None if rd or not self.has_recursive_only else self.recursive_only
        for zi in range(self.first_late, min(limit, self.nzones)):
            if skip and skip[zi]:
                continue
            match = None
            idx = self.response_ip[zi]
            if idx is not None and addrs:
                match = _best(idx, addrs)
            nsd = self.nsdname[zi]
            if match is None and nsd is not None:
                for name in ns_names:
                    match = nsd.lookup(name)
                    if match is not None:
                        break
            nsip = self.nsip[zi]
            if match is None and nsip is not None and ns_addrs:
                match = _best(nsip, ns_addrs)
            if match is None:
                continue
            if match.disabled:
                logged.append(match)
                continue
            return match, logged
        return None, logged

    def check_response(
        self, addrs: tuple[tuple[int, int], ...]
    ) -> tuple[Match | None, list[Match]]:
        """Response-IP only, all zones (the answer's addresses, no NS data)."""
        if not addrs or self.first_late >= self.nzones:
            return _NO_MATCH
        return self.check_late(addrs, (), (), self.nzones)

    def _qname_match(self, zi: int, key: bytes, wildcard: bool, code: int) -> Match:
        memo_key = (zi, key, wildcard)
        match = self._qname_memo.get(memo_key)
        if match is None:
            if len(self._qname_memo) > 100_000:
                self._qname_memo.clear()
            rule = dataclasses.replace(self.zones[zi].rule_for(key, wildcard, code), zone_index=zi)
            match = self._qname_memo[memo_key] = self._match(rule)
        return match

    def _client_candidates(self, client: str) -> list[Match | None]:
        hit = self._client_memo.get(client)
        if hit is None:
            if len(self._client_memo) > 100_000:
                self._client_memo.clear()
            try:
                addr = ipaddress.ip_address(client.split("%", maxsplit=1)[0])
            except ValueError:
                return [None] * len(self.zones)
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            hit = [idx.lookup(addr) if idx else None for idx in self.client_ip]
            self._client_memo[client] = hit
        return hit

    def _match(self, rule: Rule) -> Match:
        st = self.settings[rule.zone_index]
        policy = st.policy
        if policy == "given":
            return Match(rule, rule.action, log=st.log)
        if policy == "disabled":
            return Match(rule, rule.action, disabled=True, log=st.log)
        if policy.startswith("cname:"):
            return Match(rule, Action.LOCAL_DATA, log=st.log)
        return Match(rule, _OVERRIDE_ACTION[policy], log=st.log)

    def override_cname(self, zone_index: int) -> LocalRecord | None:
        """The CNAME record of a ``cname:TARGET`` zone policy."""
        policy = self.settings[zone_index].policy
        if not policy.startswith("cname:"):
            return None
        rd = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.CNAME,
            policy[6:],
            origin=dns.name.root,
            relativize=False,
        )
        return LocalRecord(dns.rdatatype.CNAME, 300, rd)

"""Policy evaluation over compiled zones (compiled.py), swapped whole per version.

Checks before resolution (``check_query``: Client-IP, QNAME) and after it
(``check_late``: Response-IP, NSDNAME, NSIP, which need the answer or the
name servers of the queried name's zone):

* zones in configured order, the first zone with a match wins;
* inside a zone, Client-IP > QNAME > Response-IP > NSDNAME > NSIP (BIND 9 ARM);
  so a QNAME match in zone k is final at once only when no zone before k has
  Response-IP, NSDNAME or NSIP rules (``late_before``);
* QNAME: an exact owner beats a wildcard; ``*.example`` matches a name below
  ``example`` only when ``example`` is its closest encloser (RFC 4592, as BIND 9
  and Unbound): a name of the zone between them -- an owner, or an empty
  non-terminal such as ``b.example`` when ``x.b.example`` is an owner -- stops
  it; never ``example`` itself;
* Client-IP: longest prefix wins inside a zone;
* PASSTHRU stops evaluation of later zones;
* a ``mamori-qtype`` rule (rules.qtype_branches) acts by the query type: its
  branch for the type is the zone's match, or, when it has none, the zone has
  no QNAME match for the query (``check_typed``);
* a zone with policy ``disabled`` only logs what it would have done, and
  evaluation continues with the next zone.

Names are handled as lowercased uncompressed wire bytes (the resolver's cache
key prefix), so a QNAME probe is a hash-table probe in the mapped file with no
parsing, and a repeated name one dict probe (the QNAME part of ``check_query``
is memoised per name for the policy version). Rule and Match objects are
built on the first hit and memoised; nothing is built per rule at start-up.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori.policy.compiled import CompiledZone, compile_zone
from mamori.policy.model import Action, LocalRecord, Match, Rule, Trigger
from mamori.policy.rules import Branch, LoadedZone, qtype_branches

_EMPTY: list[Match] = []  # shared by memoised results: callers never change it
_NO_MATCH: tuple[None, list[Match]] = (None, _EMPTY)
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
    groups: tuple[str, ...] = ()  # applies only to clients of these groups; () = everyone


_OVERRIDE_ACTION = {
    "passthru": Action.PASSTHRU,
    "drop": Action.DROP,
    "tcp-only": Action.TCP_ONLY,
    "nxdomain": Action.NXDOMAIN,
    "nodata": Action.NODATA,
}


Probe = Callable[[bytes], tuple[bytes, bool, int] | None]
# Per name: (the result for a query with no Client-IP match, the QNAME match per zone
# up to the first effective one -- None when no zone matched).
QnameResult = tuple[tuple[Match | None, list[Match]], tuple[Match | None, ...] | None]
_NO_QNAME: QnameResult = (_NO_MATCH, None)
# Memo bounds (entries; a full memo is cleared). Measured: a QNAME memo entry costs
# ~40 bytes plus the name it keeps (~60), a Match with its Rule ~650 bytes; so a
# worker holds at most ~3 MB + ~20-40 MB, only when that many distinct names / rules hit.
QNAME_MEMO = 32_768  # names whose QNAME decision is memoised per policy version
RULE_MEMO = 32_768  # Match objects kept per policy version (built on first hit)
# Versions of views (Policy.view): negative, unique in the process, so a decision
# memoised for one view (cache entries, rewrite memos) is never taken for another.
_VIEW_VERSIONS = itertools.count(-1, -1)


class Policy:
    """All policy zones (compiled, in configured order), ready to answer "does this match?".

    *zones*: the compiled zones applied, in order (``compiled.CompiledZone``,
    possibly overlaid views); *settings*: one ZoneSettings per zone, same
    order; *version*: increases with every new policy (memoised decisions
    elsewhere carry it). Zones only held to be published are not given here.
    *qname_memo*: names whose QNAME decision is memoised. Raises ValueError
    when *zones* and *settings* differ in length.
    """

    def __init__(
        self,
        zones: Sequence[CompiledZone],
        settings: list[ZoneSettings],
        version: int,
        qname_memo: int = QNAME_MEMO,
    ) -> None:
        if len(zones) != len(settings):
            raise ValueError(f"{len(zones)} zones but {len(settings)} zone settings")
        self.version = version
        self.zones = list(zones)
        self.settings = settings
        self.soa = [z.soa for z in zones]
        self._probes: list[Probe] = [z.qname for z in zones]
        self.client_ip = [z.has_ip(Trigger.CLIENT_IP) for z in zones]
        self.response_ip = [z.has_ip(Trigger.RESPONSE_IP) for z in zones]
        self.nsip = [
            z.has_ip(Trigger.NSIP) and st.nsip_enable for z, st in zip(zones, settings, strict=True)
        ]
        self.nsdname = [
            z.counts[Trigger.NSDNAME] > 0 and st.nsdname_enable
            for z, st in zip(zones, settings, strict=True)
        ]
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
        self.has_client_ip = any(self.client_ip)
        self.has_response_ip = any(self.response_ip)
        # The decision depends on the query name only: no Client-IP rules, no
        # log-only zones. The resolver may then memoise it per name.
        self.by_name_only = not self.has_client_ip and all(
            st.policy != "disabled" for st in settings
        )
        self.hits = [0] * n  # rewrites per zone (counted by the resolver)
        self.rule_count = sum(z.rule_count for z in zones)
        self._memo_size = qname_memo
        self._memo: dict[bytes, QnameResult] = {}  # RD=1 queries (or no recursive-only zone)
        self._memo_rd0: dict[bytes, QnameResult] = {}  # RD=0 queries
        self._client_memo: dict[str, list[Match | None]] = {}
        self._qname_memo: dict[tuple[int, bytes, bool], Match] = {}
        self._other_memo: dict[tuple[int, int], Match] = {}
        # mamori-qtype rules: (zone, key, wildcard, qtype) -> the branch's Match or None
        self._branch_memo: dict[tuple[int, bytes, bool, int], Match | None] = {}
        self._branches: dict[tuple[int, bytes, bool], tuple[dict[int, Branch], Branch]] = {}
        # Client groups: does any zone apply to some groups only? Views by zones kept.
        self.has_groups = any(st.groups for st in settings)
        # The policy version this is a view of: None for the whole policy (``base``
        # is then the policy itself, without a reference to itself: no reference
        # cycle, so a replaced version is freed as soon as nothing uses it, with
        # no help from the cyclic GC, which the data plane keeps away, gc.freeze()).
        self._base: Policy | None = None
        self._views: dict[tuple[int, ...], Policy] = {}

    @property
    def base(self) -> Policy:
        """The policy version this is a view of (itself for the whole policy)."""
        return self if self._base is None else self._base

    def retire(self) -> None:
        """Forget the views made of this version (a newer one replaced it).

        A view and its whole policy refer to each other; without this the pair
        is only freed by the cyclic GC, and the data plane freezes every object
        alive at a swap (``gc.freeze()``), so a replaced version with its memos
        (up to *qname_memo* names) would stay in memory for good. Views still in
        use keep working (each keeps its ``base``).
        """
        self._views.clear()

    @classmethod
    def from_loaded(
        cls, zones: Sequence[LoadedZone], settings: list[ZoneSettings], version: int
    ) -> Policy:
        """A policy over *zones* compiled in memory (tests, ``mamori check``, one process)."""
        return cls([CompiledZone(compile_zone(z)) for z in zones], settings, version)

    def __len__(self) -> int:
        return self.rule_count

    def view(self, groups: Collection[str]) -> Policy:
        """The policy as a client in *groups* sees it (built once per distinct set of zones).

        Its zones: those without ``groups``, and those listing one of *groups*,
        in configured order. When that is every zone, the policy itself. A view
        shares the compiled zones (mapped once) and has its own memos and its own
        version (negative, unique in the process): what is memoised for one view
        is never used for another. ``base`` is the policy it is a view of.
        """
        if not self.has_groups:
            return self
        keep = tuple(
            i
            for i, st in enumerate(self.settings)
            if not st.groups or any(g in groups for g in st.groups)
        )
        if len(keep) == self.nzones:
            return self
        view = self._views.get(keep)
        if view is None:
            view = Policy(
                [self.zones[i] for i in keep],
                [self.settings[i] for i in keep],
                next(_VIEW_VERSIONS),
                self._memo_size,
            )
            view._base = self
            self._views[keep] = view
        return view

    def __bool__(self) -> bool:
        return True  # a policy with no rules (yet) is still a policy, not "no policy"

    # ----------------------------------------------------------------- checks
    def check_query(
        self, client: str | None, qname: bytes, rd: bool = True
    ) -> tuple[Match | None, list[Match]]:
        """First effective match for a query, and the disabled zones' matches before it.

        *qname* is the lowercased wire name; *client* None checks QNAME rules
        only (names later in a CNAME chain). With *rd* False (an RD=0 query)
        zones set to ``recursive_only`` are left out. The QNAME part is
        memoised per name for this policy version (one dict probe when
        repeated); the returned list is shared: do not change it.
        """
        memo = self._memo if rd or not self.has_recursive_only else self._memo_rd0
        found = memo.get(qname)
        if found is None:
            found = self._qname_part(qname, rd)
            if len(memo) >= self._memo_size:
                memo.clear()
            memo[qname] = found
        if client is None or not self.has_client_ip:
            return found[0]
        clients = self._client_candidates(client)
        per_zone = found[1]
        logged: list[Match] | None = None
        skip = None if rd or not self.has_recursive_only else self.recursive_only
        for zi in range(self.nzones):
            if skip and skip[zi]:
                continue
            match = clients[zi]  # Client-IP beats QNAME in one zone
            if match is None and (per_zone is None or (match := per_zone[zi]) is None):
                continue
            if match.disabled:
                logged = [*(logged or []), match]
                continue
            return match, logged or _EMPTY
        return (None, logged) if logged else _NO_MATCH

    def check_typed(
        self, client: str | None, qname: bytes, qtype: int, rd: bool = True
    ) -> tuple[Match | None, list[Match]]:
        """``check_query`` for a query of type *qtype*, ``mamori-qtype`` rules applied.

        Call it when ``check_query`` returned a match (or a log-only match)
        whose ``typed`` is set: a typed rule's branch for *qtype* is its zone's
        match, and a typed rule without a branch for *qtype* leaves its zone
        without a QNAME match (the next zones are asked). Not memoised per
        name (typed rules are few); the branches' Match objects are.
        """
        skip = None if rd or not self.has_recursive_only else self.recursive_only
        clients = (
            self._client_candidates(client) if client is not None and self.has_client_ip else None
        )
        logged: list[Match] = []
        for zi, probe in enumerate(self._probes):
            if skip and skip[zi]:
                continue
            match = clients[zi] if clients is not None else None
            if match is None:
                hit = probe(qname)
                if hit is None:
                    continue
                match = self._qname_match(zi, *hit)
                if match.typed:
                    match = self._branch_match(zi, match, hit[0], hit[1], qtype)
                    if match is None:
                        continue
            if match.disabled:
                logged.append(match)
                continue
            return match, logged
        return None, logged

    def check_query_typed(
        self, client: str | None, qname: bytes, qtype: int, rd: bool = True
    ) -> tuple[Match | None, list[Match]]:
        """``check_query``, then ``check_typed`` when a typed rule was met (any caller
        that knows the query type and is not the per-query fast path)."""
        found, logged = self.check_query(client, qname, rd)
        if (found is not None and found.typed) or (logged and any(m.typed for m in logged)):
            return self.check_typed(client, qname, qtype, rd)
        return found, logged

    def _branch_match(
        self, zi: int, match: Match, key: bytes, wildcard: bool, qtype: int
    ) -> Match | None:
        """The Match of a typed rule's branch for *qtype* (None: no rule for that type)."""
        memo_key = (zi, key, wildcard, qtype)
        if memo_key in self._branch_memo:
            return self._branch_memo[memo_key]
        if len(self._branch_memo) > RULE_MEMO:
            self._branch_memo.clear()
            self._branches.clear()
        rule = match.rule
        branches = self._branches.get(memo_key[:3])
        if branches is None:
            branches = self._branches[memo_key[:3]] = qtype_branches(rule)
        branch = branches[0].get(qtype, branches[1])
        out = None
        if branch is not None:
            action, records = branch
            out = self._match(
                Rule(rule.zone, zi, Trigger.QNAME, rule.owner, action, records, wildcard, key)
            )
        self._branch_memo[memo_key] = out
        return out

    def _qname_part(self, qname: bytes, rd: bool) -> QnameResult:
        """QNAME matches zone by zone, up to the first that is not log-only.

        The per-zone matches are kept only when Client-IP rules exist (they
        are combined with the client's matches per query).
        """
        skip = None if rd or not self.has_recursive_only else self.recursive_only
        per_zone: list[Match | None] | None = None
        logged: list[Match] | None = None
        for zi, probe in enumerate(self._probes):
            if skip and skip[zi]:
                continue
            hit = probe(qname)
            if hit is None:
                continue
            match = self._qname_match(zi, *hit)
            if self.has_client_ip:
                if per_zone is None:
                    per_zone = [None] * self.nzones
                per_zone[zi] = match
            if match.disabled:
                logged = [*(logged or []), match]
                continue
            return (match, logged or _EMPTY), tuple(per_zone) if per_zone else None
        if logged is None:
            return _NO_QNAME
        return (None, logged), tuple(per_zone) if per_zone else None

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
            if addrs and self.response_ip[zi]:
                match = self._best(zi, Trigger.RESPONSE_IP, addrs)
            if match is None and self.nsdname[zi]:
                z = self.zones[zi]
                for name in ns_names:
                    index = z.nsdname(name)
                    if index is not None:
                        match = self._other_match(zi, index)
                        break
            if match is None and ns_addrs and self.nsip[zi]:
                match = self._best(zi, Trigger.NSIP, ns_addrs)
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
            if len(self._qname_memo) > RULE_MEMO:
                self._qname_memo.clear()
            rule = self.zones[zi].rule_for(key, wildcard, code, zi)
            match = self._qname_memo[memo_key] = self._match(rule)
        return match

    def _other_match(self, zi: int, index: int) -> Match:
        """The Match of a Client-IP / Response-IP / NSDNAME / NSIP rule (decoded on first hit)."""
        match = self._other_memo.get((zi, index))
        if match is None:
            if len(self._other_memo) > RULE_MEMO:
                self._other_memo.clear()
            rule = self.zones[zi].other_rule(index, zi)
            match = self._other_memo[(zi, index)] = self._match(rule)
        return match

    def _best(self, zi: int, trigger: Trigger, addrs: tuple[tuple[int, int], ...]) -> Match | None:
        """The match of the longest prefix containing one of *addrs* (then smallest network)."""
        z = self.zones[zi]
        best: tuple[int, int, int] | None = None
        for version, value in addrs:
            found = z.ip_longest(trigger, version, value)
            if found and (best is None or (found[0], -found[1]) > (best[0], -best[1])):
                best = found
        return self._other_match(zi, best[2]) if best else None

    def _client_candidates(self, client: str) -> list[Match | None]:
        hit = self._client_memo.get(client)
        if hit is None:
            if len(self._client_memo) > 100_000:
                self._client_memo.clear()
            try:
                addr = ipaddress.ip_address(client.split("%", maxsplit=1)[0])
            except ValueError:
                return [None] * self.nzones
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            version, value = addr.version, int(addr)
            hit = []
            for zi, z in enumerate(self.zones):
                found = (
                    z.ip_longest(Trigger.CLIENT_IP, version, value) if self.client_ip[zi] else None
                )
                hit.append(self._other_match(zi, found[2]) if found else None)
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

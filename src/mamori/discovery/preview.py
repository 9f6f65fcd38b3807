"""Feed impact preview: what a feed, dataset or policy zone would have blocked here.

The candidate is compiled the way enforcement compiles it (a feed's lines ->
``feeds.publish.rpz`` rules -> a zone file -> ``policy.zone`` loader ->
``policy.compiled``), placed where it would sit in the configured policy
order (after the zones in force before it), and the query log of the last N
days is replayed against the real ``policy.engine.Policy``:

1. the distinct query names of the window (one scan of one column), and, when
   the candidate has Response-IP rules or QNAME rules at all, the distinct
   answers naming a CNAME target or an address (CNAME chains are checked as
   the resolver checks them, postcheck.py);
2. the candidate alone is probed once per distinct name / answer / client:
   only what it could match is looked at again;
3. those rows, grouped by (name, client, type, client groups, answer), are
   decided by the whole policy (zones in force before the candidate, then the
   candidate) as the resolver decides them: Client-IP, QNAME (with
   ``mamori-qtype`` branches), the CNAME chain, Response-IP from the logged
   answer's addresses, in zone order, log-only (``disabled``) zones skipped.

A query counts as the candidate's when the candidate is the zone whose rule
decides it and the rule is not PASSTHRU. A query the candidate would match but
an earlier zone already decides is counted apart (blocked earlier, or allowed
earlier by a PASSTHRU rule). Not replayed: NSDNAME/NSIP triggers (the log
keeps no name-server data) and RD=0 queries to ``recursive_only`` zones (the
log keeps no RD bit: every query is taken as RD=1).

False-positive warnings, for the names the candidate would block: asked by
many of this network's clients (``popular_share`` of the clients seen in the
window, at least ``popular_min``), seen in passive DNS for a long time
(``history_days``; ``store.pdns_base.PdnsStore.names_first_last``), or allowed
by a PASSTHRU rule of any zone in force (an allow rule of a zone after the
candidate does not save the name: the candidate comes first).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mamori.discovery.replay import (
    PreviewError,
    QueryLog,
    blocks,
    client_listed,
    decide,
    parse_answer,
    wire_name,
)
from mamori.policy.compiled import CompiledZone
from mamori.policy.engine import Policy, ZoneSettings
from mamori.policy.model import Action, Match, Trigger
from mamori.store.pdns_base import PdnsStore

__all__ = ["Candidate", "Options", "PreviewError", "QueryLog", "Report", "ZoneSpec", "run_preview"]

DAY = 86400
TOP = 10  # names and clients listed
WARN_MAX = 50  # warnings listed (the count says how many more)
PROCESS_ROWS = 2_000_000  # logged queries from which the first pass runs in a child process
ZoneSpec = tuple[CompiledZone, ZoneSettings]


@dataclass(frozen=True)
class Candidate:
    """What is previewed, compiled: *label* (the feed/dataset/zone name or the file),
    *kind* ("feed", "dataset", "rpz", "file"), its compiled zone and settings (the
    policy it would have when enforced), and lines of its source not applied."""

    label: str
    kind: str
    zone: CompiledZone
    settings: ZoneSettings
    notes: tuple[str, ...] = ()

    @property
    def rules(self) -> int:
        return self.zone.rule_count


@dataclass(frozen=True)
class Warning:
    """A name the candidate would block that may be a false positive; *reasons* say why
    (``popular``, ``long-history``, ``allowlisted``), *detail* in words."""

    name: str
    queries: int
    clients: int
    reasons: tuple[str, ...]
    detail: str
    first_seen: int | None = None  # passive DNS time_first (UNIX seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queries": self.queries,
            "clients": self.clients,
            "reasons": list(self.reasons),
            "detail": self.detail,
            "first_seen": self.first_seen,
        }


@dataclass
class Report:
    """The outcome of a preview. Counts are of logged queries (rows of the query log)
    in [since, until); names are lowercase presentation form with the trailing dot."""

    candidate: str
    kind: str
    zone: str
    rules: int
    days: float
    since: float
    until: float
    queries: int = 0  # queries in the window
    clients_seen: int = 0  # distinct clients in the window
    blocked_queries: int = 0  # queries the candidate would block
    blocked_names: int = 0
    blocked_clients: int = 0
    top_names: list[tuple[str, int, int]] = field(default_factory=list)  # name, queries, clients
    top_clients: list[tuple[str, int]] = field(default_factory=list)  # client, queries
    # zones before the candidate in the policy order (evaluated first)
    earlier_zones: list[str] = field(default_factory=list)
    # queries the candidate matches that an earlier zone already blocks / allows (PASSTHRU)
    already_blocked: int = 0
    already_blocked_by: dict[str, int] = field(default_factory=dict)
    allowed_earlier: int = 0
    warnings: list[Warning] = field(default_factory=list)
    warnings_total: int = 0
    not_replayed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "kind": self.kind,
            "zone": self.zone,
            "rules": self.rules,
            "days": self.days,
            "since": self.since,
            "until": self.until,
            "queries": self.queries,
            "clients_seen": self.clients_seen,
            "blocked": {
                "queries": self.blocked_queries,
                "names": self.blocked_names,
                "clients": self.blocked_clients,
            },
            "top_names": [{"name": n, "queries": q, "clients": c} for n, q, c in self.top_names],
            "top_clients": [{"client": c, "queries": q} for c, q in self.top_clients],
            "earlier_zones": self.earlier_zones,
            "already_blocked": self.already_blocked,
            "already_blocked_by": self.already_blocked_by,
            "allowed_earlier": self.allowed_earlier,
            "warnings": [w.to_json() for w in self.warnings],
            "warnings_total": self.warnings_total,
            "not_replayed": self.not_replayed,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
        }


# ---------------------------------------------------------------------- replay
@dataclass(frozen=True)
class Options:
    days: float = 7.0
    top: int = TOP
    popular_share: float = 0.25  # of the clients seen in the window ...
    popular_min: int = 3  # ... and at least this many
    history_days: int = 90  # seen in passive DNS longer than this: a long history
    now: float | None = None


@dataclass
class _Scan:
    """What the first pass over the log found (run while the candidate compiles)."""

    totals: tuple[int, int] = (0, 0)
    names: set[str] = field(default_factory=set)
    answers: set[str] = field(default_factory=set)  # holding a CNAME
    error: BaseException | None = None
    seconds: float = 0.0
    cpu: float = 0.0  # of the scan thread


def _scan(log: QueryLog, since: float, until: float, out: _Scan) -> None:
    t0, c0 = time.monotonic(), time.thread_time()
    try:
        out.totals = log.totals(since, until)
        out.answers = log.cname_answers(since, until)
        out.names = log.names(since, until)
    except BaseException as e:  # re-raised by the caller's thread
        out.error = e
    out.seconds = time.monotonic() - t0
    out.cpu = time.thread_time() - c0


def scan_file(path: str, since: float, until: float) -> _Scan:
    """``_scan`` of the log in *path* (in a child process: its own interpreter lock)."""
    out = _Scan()
    try:
        log = QueryLog(Path(path))
    except PreviewError as e:
        out.error = e
        return out
    try:
        _scan(log, since, until, out)
    finally:
        log.close()
    return out


class _FirstPass:
    """The first pass over the log while the candidate compiles: in a thread for a small
    log; for a big one (building the set of names is Python work, it would share the
    interpreter lock with the compile) in a child process (spawned)."""

    def __init__(self, log: QueryLog, since: float, until: float) -> None:
        self.log, self.out = log, _Scan()
        self.pool: Any = None
        if log.path is not None and log.count(since, until) >= PROCESS_ROWS:
            self.pool = multiprocessing.get_context("spawn").Pool(1)
            self.job = self.pool.apply_async(scan_file, (str(log.path), since, until))
        else:
            self.thread = threading.Thread(
                target=_scan, args=(log, since, until, self.out), daemon=True
            )
            self.thread.start()

    def result(self) -> _Scan:
        if self.pool is None:
            self.thread.join()
            return self.out
        try:
            out: _Scan = self.job.get()
        finally:
            self.pool.close()
            self.pool.join()
        return out

    def stop(self) -> None:
        if self.pool is None:
            self.log.interrupt()
            self.thread.join()
        else:
            self.pool.terminate()
            self.pool.join()


def run_preview(
    build: Callable[[], Candidate],
    place: Callable[[Candidate], tuple[Sequence[ZoneSpec], Sequence[ZoneSpec]]],
    log: QueryLog,
    pdns: PdnsStore | None = None,
    opts: Options = Options(),
) -> Report:
    """Replay the query log of the last ``opts.days`` against the candidate *build*
    makes, placed by *place*: (the zones in force before it, in order; those after it,
    whose PASSTHRU rules are looked at for warnings). The first pass over the log runs
    beside *build* (a thread, or a child process for a big log). Errors of *build*
    (PreviewError) are raised after the scan is stopped. Blocking: run it in a thread
    from an event loop."""
    t0 = time.monotonic()
    until = (opts.now if opts.now is not None else time.time()) + 1
    since = until - 1 - opts.days * DAY
    scanning = _FirstPass(log, since, until)
    c0 = time.thread_time()
    try:
        candidate = build()
        compiled_at, compile_cpu = time.monotonic(), time.thread_time() - c0
    except BaseException:
        scanning.stop()
        raise
    first = scanning.result()
    if first.error is not None:
        if isinstance(first.error, sqlite3.Error):
            raise PreviewError(f"cannot read the query log: {first.error}") from first.error
        raise first.error
    before, after = place(candidate)
    settings = replace(candidate.settings, policy="given")  # as enforced
    zones = [z for z, _ in before] + [candidate.zone]
    all_settings = [s for _, s in before] + [settings]
    policy = Policy(zones, all_settings, version=1)
    alone = Policy([candidate.zone], [settings], version=2)
    name = settings.name
    rep = Report(candidate.label, candidate.kind, name, candidate.rules, opts.days, since, until)
    rep.earlier_zones = [s.name for _, s in before]
    rep.notes = list(candidate.notes)
    rep.queries, rep.clients_seen = first.totals
    cz = candidate.zone
    if cz.counts[Trigger.NSDNAME] or cz.has_ip(Trigger.NSIP):
        rep.not_replayed.append("NSDNAME/NSIP rules (the query log keeps no name-server data)")
    if settings.recursive_only:
        rep.not_replayed.append("recursive_only (the query log keeps no RD bit: taken as RD=1)")

    rep.phases = {
        "compile": compiled_at - t0,
        "compile CPU": compile_cpu,
        "first scan (in parallel)": first.seconds,
        "first scan CPU": first.cpu,
    }
    t1 = time.monotonic()
    # 1-2. what the candidate alone could match
    names = {n for n in first.names if (k := wire_name(n)) and cz.qname(k) is not None}
    has_rip = cz.has_ip(Trigger.RESPONSE_IP)
    answers = set()
    for a in log.answers(since, until) if has_rip else first.answers:
        chain, addrs = parse_answer(a)
        if any(cz.qname(n) is not None for n in chain) or (
            has_rip and any(cz.ip_longest(Trigger.RESPONSE_IP, v, x) for v, x in addrs)
        ):
            answers.add(a)
    clients = []
    if cz.has_ip(Trigger.CLIENT_IP):
        clients = [c for c in log.clients(since, until) if client_listed(cz, c)]

    rep.phases["probe"] = time.monotonic() - t1
    t1 = time.monotonic()
    # 3. those rows, decided by the whole policy
    per_name: dict[str, list[int]] = {}  # name -> [queries]
    name_clients: dict[str, set[str]] = {}
    per_client: Counter[str] = Counter()
    parsed: dict[str, tuple[tuple[bytes, ...], tuple[tuple[int, int], ...]]] = {}
    views: dict[str, tuple[Policy, Policy]] = {}
    # Without Client-IP rules a decision does not depend on the client: one per
    # (groups, name, type, answer), whatever the number of clients asking.
    by_client = policy.has_client_ip
    decided: dict[tuple[str, str, int, str], Match | None] = {}
    for qname, client, qtype, group, answer, n in log.rows(since, until, names, answers, clients):
        if by_client:
            m = _row_decision(policy, alone, views, parsed, client, qname, qtype, group, answer)
        else:
            memo_key = (group, qname, qtype, answer)
            if memo_key in decided:
                m = decided[memo_key]
            else:
                m = _row_decision(policy, alone, views, parsed, client, qname, qtype, group, answer)
                decided[memo_key] = m
        if m is None:
            continue  # the candidate alone would not block it (no rule, or its own PASSTHRU)
        if m.rule.zone == name:
            per_name.setdefault(qname, [0])[0] += n
            name_clients.setdefault(qname, set()).add(client)
            per_client[client] += n
            rep.blocked_queries += n
        elif blocks(m):
            rep.already_blocked += n
            rep.already_blocked_by[m.rule.zone] = rep.already_blocked_by.get(m.rule.zone, 0) + n
        else:
            rep.allowed_earlier += n
    rep.blocked_names = len(per_name)
    rep.blocked_clients = len(per_client)
    ranked = sorted(per_name, key=lambda k: (-per_name[k][0], k))
    rep.top_names = [(k, per_name[k][0], len(name_clients[k])) for k in ranked[: opts.top]]
    rep.top_clients = sorted(per_client.items(), key=lambda kv: (-kv[1], kv[0]))[: opts.top]

    rep.phases["replay"] = time.monotonic() - t1
    t1 = time.monotonic()
    # 4. false-positive warnings
    others = [*before, *after]
    seen = rep.clients_seen
    warnings = _warnings(ranked, per_name, name_clients, seen, pdns, others, opts, until)
    rep.warnings_total = len(warnings)
    rep.warnings = warnings[:WARN_MAX]
    rep.phases["warnings"] = time.monotonic() - t1
    rep.seconds = time.monotonic() - t0
    return rep


def _row_decision(
    policy: Policy,
    alone: Policy,
    views: dict[str, tuple[Policy, Policy]],
    parsed: dict[str, tuple[tuple[bytes, ...], tuple[tuple[int, int], ...]]],
    client: str,
    qname: str,
    qtype: int,
    group: str,
    answer: str,
) -> Match | None:
    """The whole policy's decision for a logged query the candidate alone would block
    (None: the candidate alone would not: no rule, or its own PASSTHRU)."""
    pair = views.get(group)
    if pair is None:
        groups = [g for g in group.split(",") if g]
        pair = views[group] = (policy.view(groups), alone.view(groups))
    view, own = pair
    chain_addrs = parsed.get(answer)
    if chain_addrs is None:
        chain_addrs = parsed[answer] = parse_answer(answer)
    key = wire_name(qname)
    if not key or not blocks(decide(own, client, key, qtype, *chain_addrs)):
        return None
    m = decide(view, client, key, qtype, *chain_addrs)
    assert m is not None  # the candidate's rule at least
    return m


def _warnings(
    ranked: list[str],
    per_name: dict[str, list[int]],
    name_clients: dict[str, set[str]],
    clients_seen: int,
    pdns: PdnsStore | None,
    others: Sequence[ZoneSpec],
    opts: Options,
    until: float,
) -> list[Warning]:
    popular = max(opts.popular_min, int(opts.popular_share * clients_seen + 0.999))
    history = pdns.names_first_last(ranked) if pdns is not None and ranked else {}
    allow = [(z, s) for z, s in others if s.policy in ("given", "passthru")]
    out = []
    for name in ranked:
        reasons, words = [], []
        nclients = len(name_clients[name])
        if nclients >= popular:
            reasons.append("popular")
            words.append(f"asked by {nclients} of {clients_seen} clients")
        first = history.get(name, (None, 0, 0))[0]
        if first is not None and until - first >= opts.history_days * DAY:
            reasons.append("long-history")
            words.append(f"in passive DNS for {int((until - first) // DAY)} days")
        key = wire_name(name)
        for z, s in allow:
            hit = z.qname(key)
            if hit is None:
                continue
            rule = z.rule_for(hit[0], hit[1], hit[2])
            if rule.action is Action.PASSTHRU or s.policy == "passthru":
                reasons.append("allowlisted")
                words.append(f"allowed by {rule.rule_name} (zone {s.name})")
                break
        if reasons:
            out.append(
                Warning(name, per_name[name][0], nclients, tuple(reasons), "; ".join(words), first)
            )
    return out

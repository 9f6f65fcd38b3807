"""Response rate limiting (RRL) over UDP, as BIND's ``rate-limit`` does it.

A resolver answering spoofed UDP queries floods the spoofed address with its
answers (reflection), bigger than the queries (amplification). RRL counts
*identical responses* to a *client prefix* and drops (or slips) those over a
rate. Separate from the per-client query limit (acl.py): that one counts what
a client asks, this one what we send to an address block.

What counts as identical (the account's key; ``[rrl]``):

- an answer (NOERROR with records): client prefix, qname and qtype;
- NODATA (NOERROR, no answer records): client prefix and qname, any qtype;
- NXDOMAIN: client prefix and the zone (the owner of the SOA in the authority
  section; the qname when there is none), so random subdomains of one zone
  share one account; its own rate, ``nxdomains_per_second``;
- an error (any other rcode: SERVFAIL, REFUSED, FORMERR ...): the client prefix
  alone; its own rate, ``errors_per_second``.

Each account is a credit balance: it earns *rate* credits a second, holds at
most *rate*, and each response costs one; a response that takes it below zero
is *limited*, and the debt stops at ``-window x rate`` (so a flood that stops
is forgiven after ``window`` seconds). A limited response is dropped, except
every ``slip``-th one of an account, sent as a small TC=1 answer (empty, same
ID and question) so that a real client behind the address retries over TCP,
which is never limited. With ``log_only`` nothing is dropped: counted and logged.

The table is per data plane (each worker its own, like BIND's per view) and
bounded: ``MAX_ENTRIES`` accounts; when full, accounts idle long enough to be
back at full credit go first, then the oldest. Nothing here touches dnspython.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from time import monotonic
from typing import Any

from mamori.config import RrlConfig
from mamori.dnsutil import wire
from mamori.resolver.reply import Stats

log = logging.getLogger("mamori.resolver.rrl")

MAX_ENTRIES = 100_000  # accounts per data plane (BIND: max-table-size)
MAX_PREFIXES = 100_000  # memo: client address -> prefix
MAX_LOGGED = 10_000  # memo: (prefix, kind) -> when last logged

RESPONSES, NXDOMAINS, ERRORS = 0, 1, 2
KINDS = ("responses", "nxdomains", "errors")  # the kind label of the log and /metrics
_NODATA = 3  # a responses-kind account keyed by the name alone
_EXEMPT = -1  # prefix memo value: never limited
_V6_TAG = 1 << 130  # keeps IPv6 prefixes apart from IPv4 ones (both are ints)
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_TYPE_SOA = b"\x00\x06"


class Account:
    """One key's credit balance: *balance* credits at *last* (monotonic seconds);
    *slips* counts limited responses since the last slipped one."""

    __slots__ = ("balance", "last", "slips")

    def __init__(self, balance: float, last: float) -> None:
        self.balance = balance
        self.last = last
        self.slips = 0


class ResponseLimiter:
    """The RRL table of one data plane; ``check`` sees every UDP answer before it is sent."""

    def __init__(
        self, cfg: RrlConfig, stats: Stats, clock: Callable[[], float] = monotonic
    ) -> None:
        self.cfg = cfg
        self.stats = stats
        self.clock = clock
        self.rates = (cfg.responses_per_second, cfg.nxdomain_rate, cfg.error_rate)
        self.rate = cfg.responses_per_second
        self.floors = tuple(-cfg.window * r for r in self.rates)
        self.window = cfg.window
        self.slip = cfg.slip
        self.log_only = cfg.log_only
        self.v4_shift = 32 - cfg.ipv4_prefix_length
        self.v6_shift = 128 - cfg.ipv6_prefix_length
        self.exempt: list[tuple[int, int, int]] = []  # (version, shift, network >> shift)
        for net in cfg.exempt:
            addr, _, plen = net.partition("/")
            v6 = ":" in addr
            bits = 128 if v6 else 32
            shift = bits - int(plen or bits)
            family = socket.AF_INET6 if v6 else socket.AF_INET
            value = int.from_bytes(socket.inet_pton(family, addr))
            self.exempt.append((6 if v6 else 4, shift, value >> shift))
        # (prefix, qname + qtype) for answers; (prefix, kind, name) for the others
        self.accounts: dict[tuple[int, bytes] | tuple[int, int, bytes], Account] = {}
        self.prefixes: dict[str, int] = {}
        self.logged: dict[tuple[int, int], float] = {}
        self._prefix_get = self.prefixes.get
        self._account_get = self.accounts.get

    # ------------------------------------------------------------ the check
    def check(self, resp: bytes, addr: Any) -> bytes | None:
        """*resp* about to be sent to *addr* over UDP: itself, a TC=1 slip, or None (drop)."""
        ip = addr[0]
        pfx = self._prefix_get(ip)
        if pfx is None:
            pfx = self._prefix(ip)
        if pfx == _EXEMPT or len(resp) < 12 or resp[2] & 0x78:  # exempt; not a QUERY answer
            return resp
        # The end of the question name: its root label, the first zero byte. A name with
        # a zero byte inside a label (legal, never seen in real names) is cut there: such
        # names share accounts, which only limits them more.
        end = resp.find(0, 12)
        if resp[3] & 15 or not (resp[6] or resp[7]) or end < 0 or end + 5 > len(resp):
            return self._check_other(resp, ip, pfx, end)
        # An answer with records (the common case, inline): per name and type.
        rate = self.rate
        if not rate:
            return resp
        now = self.clock()
        key = (pfx, resp[12 : end + 3].lower())
        acct = self._account_get(key)
        if acct is None:
            if len(self.accounts) >= MAX_ENTRIES:
                self._evict(now)
            self.accounts[key] = Account(rate - 1.0, now)
            return resp
        balance = acct.balance + (now - acct.last) * rate
        if balance > rate:  # noqa: PLR1730 (no call on the hot path)
            balance = rate
        acct.last = now
        balance -= 1.0
        if balance >= 0.0:
            acct.balance = balance
            return resp
        floor = self.floors[RESPONSES]
        acct.balance = balance if balance > floor else floor
        return self._limited(resp, ip, pfx, RESPONSES, acct, now)

    def _check_other(self, resp: bytes, ip: str, pfx: int, end: int) -> bytes | None:
        """``check`` for NODATA, NXDOMAIN and errors (accounts keyed by a 3-tuple, answers'
        by a 2-tuple: they never meet); *end*: the offset of the question's root label."""
        rcode = resp[3] & 15
        n = len(resp)
        if rcode not in (0, 3) or end < 0 or end + 5 > n or resp[5] != 1 or resp[4]:
            kind = ERRORS  # an error, or no usable question: counted with the errors
            name = b""
        elif rcode == 3:
            kind = NXDOMAINS
            name = _zone_of(resp, end + 5, n) or resp[12 : end + 1].lower()
        else:
            kind = _NODATA
            name = resp[12 : end + 1].lower()
        rk = RESPONSES if kind == _NODATA else kind
        rate = self.rates[rk]
        if not rate:
            return resp
        now = self.clock()
        key = (pfx, kind, name)
        acct = self._account_get(key)
        if acct is None:
            if len(self.accounts) >= MAX_ENTRIES:
                self._evict(now)
            self.accounts[key] = Account(rate - 1.0, now)
            return resp
        balance = min(acct.balance + (now - acct.last) * rate, rate) - 1.0
        acct.last = now
        if balance >= 0.0:
            acct.balance = balance
            return resp
        acct.balance = max(balance, self.floors[rk])
        return self._limited(resp, ip, pfx, rk, acct, now)

    def _limited(
        self, resp: bytes, ip: str, pfx: int, kind: int, acct: Account, now: float
    ) -> bytes | None:
        """A response over its rate: logged (once a window per prefix and kind), counted,
        then dropped or slipped (sent anyway with ``log_only``)."""
        stats = self.stats
        last = self.logged.get((pfx, kind))
        if last is None or now - last >= self.window:
            if len(self.logged) >= MAX_LOGGED:
                self.logged.clear()
            self.logged[(pfx, kind)] = now
            self._log(resp, ip, kind)
        if kind == RESPONSES:
            stats.rrl_limited_responses += 1
        elif kind == NXDOMAINS:
            stats.rrl_limited_nxdomains += 1
        else:
            stats.rrl_limited_errors += 1
        if self.log_only:
            return resp
        if self.slip:
            acct.slips += 1
            if acct.slips >= self.slip:
                acct.slips = 0
                if kind == RESPONSES:
                    stats.rrl_slipped_responses += 1
                elif kind == NXDOMAINS:
                    stats.rrl_slipped_nxdomains += 1
                else:
                    stats.rrl_slipped_errors += 1
                return slip_answer(resp)
        if kind == RESPONSES:
            stats.rrl_dropped_responses += 1
        elif kind == NXDOMAINS:
            stats.rrl_dropped_nxdomains += 1
        else:
            stats.rrl_dropped_errors += 1
        return None

    def _log(self, resp: bytes, ip: str, kind: int) -> None:
        what = ""
        if kind != ERRORS:
            try:
                what = " for " + _question_text(resp)
            except (IndexError, ValueError):
                what = ""
        action = "logging only" if self.log_only else f"dropping, slip {self.slip}"
        log.warning(
            "rrl: limiting %s (%s)%s: over %d/s (%s; said once per %d s)",
            self.prefix_text(ip), KINDS[kind], what, self.rates[kind], action, self.window,
        )  # fmt: skip

    # ------------------------------------------------------------ prefixes
    def _prefix(self, ip: str) -> int:
        """The client's prefix as an int (or ``_EXEMPT``), memoised per address."""
        if len(self.prefixes) >= MAX_PREFIXES:
            self.prefixes.clear()
        parsed = _address(ip)
        if parsed is None:
            pfx = _EXEMPT  # not an IP address (cannot happen on a UDP socket)
        else:
            version, value = parsed
            pfx = _EXEMPT
            for v, shift, net in self.exempt:
                if v == version and value >> shift == net:
                    break
            else:
                v4 = version == 4
                pfx = value >> self.v4_shift if v4 else (value >> self.v6_shift) | _V6_TAG
        self.prefixes[ip] = pfx
        return pfx

    def prefix_text(self, ip: str) -> str:
        """``192.0.2.0/24`` for a client address (logs)."""
        parsed = _address(ip)
        if parsed is None:
            return ip
        version, value = parsed
        if version == 4:
            shift = self.v4_shift
            text = socket.inet_ntop(socket.AF_INET, (value >> shift << shift).to_bytes(4))
        else:
            shift = self.v6_shift
            text = socket.inet_ntop(socket.AF_INET6, (value >> shift << shift).to_bytes(16))
        return f"{text}/{(32 if version == 4 else 128) - shift}"

    # ------------------------------------------------------------ memory
    def _evict(self, now: float) -> None:
        """Make room: accounts back at full credit first, then the oldest (a quarter)."""
        self.purge(now)
        if len(self.accounts) >= MAX_ENTRIES * 3 // 4:
            drop = len(self.accounts) - MAX_ENTRIES * 3 // 4 + 1
            for key in list(self.accounts)[:drop]:
                del self.accounts[key]

    def purge(self, now: float) -> int:
        """Forget accounts idle long enough to be back at full credit; how many went."""
        idle = self.window + 1.0
        stale = [k for k, a in self.accounts.items() if now - a.last > idle]
        for k in stale:
            del self.accounts[k]
        if len(self.logged) > MAX_LOGGED // 2:
            self.logged = {k: t for k, t in self.logged.items() if now - t < self.window}
        return len(stale)


def slip_answer(resp: bytes) -> bytes:
    """The small answer that replaces a limited one: same ID and question, TC=1,
    NOERROR, no records (a real client retries over TCP; nothing to amplify)."""
    n = len(resp)
    end = 12
    while end < n:
        ln = resp[end]
        if ln == 0 or ln > 63:
            break
        end += ln + 1
    if end + 5 <= n and not resp[end] and resp[4:6] == b"\x00\x01":
        question = resp[12 : end + 5]
        qd = b"\x00\x01"
    else:
        question = b""
        qd = b"\x00\x00"
    flags = bytes(((resp[2] & 0x79) | 0x82, resp[3] & 0x90))  # QR, opcode, TC, RD; RA, CD
    return resp[:2] + flags + qd + b"\x00\x00\x00\x00\x00\x00" + question


def _address(ip: str) -> tuple[int, int] | None:
    """(4 or 6, the address as an int); an IPv4-mapped IPv6 address is IPv4."""
    try:
        if ":" in ip:
            packed = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
            if packed[:12] == _V4_MAPPED:
                return 4, int.from_bytes(packed[12:])
            return 6, int.from_bytes(packed)
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip))
    except OSError:
        return None


def _zone_of(resp: bytes, qend: int, n: int) -> bytes:
    """The owner of the SOA record first in the authority section of a negative answer
    (the zone of an NXDOMAIN), lowercased wire form; b"" when there is none that reads
    simply (labels ending in the root or in a pointer into the question)."""
    if resp[6] or resp[7] or not (resp[8] or resp[9]):  # answer records; no authority
        return b""
    labels = b""
    i = qend
    while i < n:
        ln = resp[i]
        if ln == 0:
            owner = labels + b"\x00"
            i += 1
            break
        if ln & 0xC0 == 0xC0:
            if i + 1 >= n:
                return b""
            ptr = (ln & 0x3F) << 8 | resp[i + 1]
            if not 12 <= ptr < qend - 4:
                return b""
            suffix_end = ptr
            while suffix_end < qend and resp[suffix_end]:
                suffix_end += resp[suffix_end] + 1
            owner = labels + resp[ptr : suffix_end + 1]
            i += 2
            break
        if ln > 63:
            return b""
        labels += resp[i : i + ln + 1]
        i += ln + 1
    else:
        return b""
    if resp[i : i + 2] != _TYPE_SOA or len(owner) > 255:
        return b""
    return owner.lower()


def _question_text(resp: bytes) -> str:
    """``example.com/A`` (the question of *resp*; logs only)."""
    end = wire.scan_name(resp, 12)
    qtype = resp[end] << 8 | resp[end + 1]
    names = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
             33: "SRV", 65: "HTTPS", 255: "ANY"}  # fmt: skip
    return f"{wire.name_to_text(resp[12:end])}/{names.get(qtype, f'TYPE{qtype}')}"


__all__ = ["KINDS", "MAX_ENTRIES", "ResponseLimiter", "slip_answer"]

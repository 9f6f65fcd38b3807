"""The resolve stage: a cache miss asked upstream, once per key however many clients wait.

Concurrent misses for one cache key share one upstream question (coalescing).
A usable answer is cached (before policy: the cache holds what the upstream
said) and offered to passive DNS. With serve-stale on and an expired entry at
hand, a client waits at most STALE_CLIENT_TIMER for the upstream before it is
answered from the stale entry (RFC 8767 section 5); the upstream question
keeps running and refreshes the cache when it completes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mamori.config import Config
from mamori.dnsutil import wire
from mamori.resolver.cache import Cache, Entry, UpstreamAnswerError, entry_from_response
from mamori.resolver.events import AnswerTap
from mamori.resolver.query import Query
from mamori.resolver.upstream import UpstreamError, Upstreams

log = logging.getLogger("mamori.resolver.pipeline")

STALE_CLIENT_TIMER = 1.8  # RFC 8767 section 5: answer stale after this long (seconds)


class Resolve:
    """Asks the upstreams; caches what they answer."""

    def __init__(
        self, cfg: Config, cache: Cache, upstreams: Upstreams, tap: AnswerTap | None = None
    ) -> None:
        self.cache = cache
        self.upstreams = upstreams
        self.tap = tap  # passive DNS sensor ([pdns] enabled)
        self.inflight: dict[bytes, asyncio.Task[tuple[Entry, str] | None]] = {}
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        self.cache_cfg = cfg.cache

    async def answer(self, q: Query, stale: Entry | None) -> tuple[Entry, str] | None:
        """The upstream's answer for *q* (entry, upstream name); None when it failed,
        or when *stale* should be served instead (serve-stale, client timer expired)."""
        key = q.key
        fetch = self.inflight.get(key)
        if fetch is None:
            fetch = asyncio.get_running_loop().create_task(self.fetch(key, q.do, q.cd, stale))
            self.inflight[key] = fetch
            fetch.add_done_callback(lambda _t: self.inflight.pop(key, None))
        if self.cache_cfg.serve_stale and stale is not None:
            done, _ = await asyncio.wait({fetch}, timeout=STALE_CLIENT_TIMER)
            result = fetch.result() if done else None
            if result is None or result[0].rcode == wire.SERVFAIL:
                stale.retry_after = time.time() + self.cache_cfg.stale_refresh_interval
                return None
            return result
        return await asyncio.shield(fetch)

    async def fetch(
        self, key: bytes, do: int, cd: int, stale: Entry | None
    ) -> tuple[Entry, str] | None:
        """Ask the upstreams one question (a cache key); cache a usable answer.

        None when every upstream failed or the answer cannot be used.
        """
        question = key[:-1]
        flags = wire.RD | (wire.CD if cd else 0)
        c = self.cache_cfg
        try:
            resp, upstream = await self.upstreams.resolve(question, flags, bool(do))
            entry, lifetime = entry_from_response(
                resp,
                question,
                time.time(),
                c.min_ttl,
                c.max_ttl,
                c.max_negative_ttl,
                c.stale_max_age if c.serve_stale else 0,
                keep_ad=bool(do),
                cd=bool(cd),
            )
        except (UpstreamError, UpstreamAnswerError) as e:
            log.debug("resolution of %s failed: %s", wire.name_to_text(key[:-5]), e)
            return None
        except Exception:  # a bug must cost one SERVFAIL, never the service
            log.exception("resolution of %s failed", wire.name_to_text(key[:-5]))
            return None
        if lifetime > 0:
            self.cache.put(key, entry)
        tap = self.tap
        if tap is not None:  # passive DNS: the answer as received (parsed elsewhere)
            tap.put((time.time(), resp))
        return entry, upstream

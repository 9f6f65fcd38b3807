"""`mamori pdns query --server URL --key KEY`: the same questions to a remote mamori
(DNSDB v2 API, Streaming Answer Format), answered as local records."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from mamori.pdns.model import type_code, type_text
from mamori.pdns.query import Ask
from mamori.store.pdns_base import Fences, Record


class RemoteError(Exception):
    pass


def path_of(ask: Ask) -> str:
    q = urllib.parse.quote
    if ask.kind == "rrset":
        path = f"lookup/rrset/name/{q(ask.value, safe='')}"
        if ask.rrtype is not None or ask.bailiwick:
            path += "/" + (type_text(ask.rrtype) if ask.rrtype is not None else "ANY")
        if ask.bailiwick:
            path += "/" + q(ask.bailiwick, safe="")
        return path
    if ask.kind == "rdata-name":
        path = f"lookup/rdata/name/{q(ask.value, safe='')}"
        return path + (f"/{type_text(ask.rrtype)}" if ask.rrtype is not None else "")
    return f"lookup/rdata/ip/{ask.value.replace('/', ',')}"


def run(
    server: str, key: str, ask: Ask, fences: Fences, limit: int, offset: int, timeout: float = 30
) -> list[Record]:
    params: dict[str, object] = {"limit": limit, "offset": offset, "aggr": "false"}
    for name, value in (
        ("time_first_before", fences.first_before),
        ("time_first_after", fences.first_after),
        ("time_last_before", fences.last_before),
        ("time_last_after", fences.last_after),
    ):
        if value is not None:
            params[name] = value
    url = f"{server.rstrip('/')}/dnsdb/v2/{path_of(ask)}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, headers={"X-API-Key": key, "Accept": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            lines = r.read().decode("utf-8").splitlines()
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace").strip()
        raise RemoteError(f"{server}: HTTP {e.code}: {body}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RemoteError(f"{server}: {getattr(e, 'reason', e)}") from None
    out: list[Record] = []
    ended = False
    for line in lines:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("cond") in ("succeeded", "limited"):
            ended = True
        elif msg.get("cond") == "failed":
            raise RemoteError(f"{server}: query failed: {msg.get('msg', '')}")
        o = msg.get("obj")
        if o:
            rdatas = o["rdata"] if isinstance(o["rdata"], list) else [o["rdata"]]
            for rd in rdatas:
                out.append(
                    Record(o["rrname"], type_code(o["rrtype"]), rd, o.get("bailiwick", ""),
                           int(o["time_first"]), int(o["time_last"]), int(o["count"]))
                )  # fmt: skip
    if not ended:
        raise RemoteError(f"{server}: the answer stream was cut short")
    return out

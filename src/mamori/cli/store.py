"""``mamori store``: what the store keeps about clients (docs/reference/privacy.md)."""

from __future__ import annotations

import click

from mamori.cli.util import config_option, fail, load_config
from mamori.errors import MamoriError


@click.group()
def store() -> None:
    """The store directory's personal data (docs/reference/privacy.md)."""


@store.command("forget-client")
@config_option
@click.argument("address")
def store_forget_client(config_path: str, address: str) -> None:
    """Erase the query log rows, block page reports and alerts of ADDRESS (an address,
    or a network such as 192.0.2.0/24 for rows kept truncated). With [store] url: in
    this node's query-log spool and in ClickHouse too (every shard), waiting until the
    server has done it. Run it on every node (its local files and spool)."""
    from mamori.store.forget import forget_client, forget_client_clickhouse

    cfg = load_config(config_path)
    try:
        counts = forget_client(cfg.store.path, address)
        if cfg.store.url is not None:
            from mamori.store.forget import forget_client_spool
            from mamori.store.querylog_open import open_admin_store, spool_dir

            # first the batches waiting on this node, then the server (a batch sent
            # meanwhile is in ClickHouse by then)
            kept = forget_client_spool(spool_dir(cfg), address)
            if kept is not None:
                counts["querylog-spool"] = kept
            ch = open_admin_store(cfg)
            try:
                counts.update(forget_client_clickhouse(ch, address))
            finally:
                ch.close()
    except ValueError as e:
        fail(MamoriError(f"{address}: not an address or a network ({e})"))
    except MamoriError as e:
        fail(MamoriError(f"{address}: {e}"))
    for name, n in counts.items():
        click.echo(f"{name}: {n} rows deleted")
    if not counts:
        click.echo("no store files yet")

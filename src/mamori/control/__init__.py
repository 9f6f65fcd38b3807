"""The control plane: everything but answering queries, in the parent process.

Configuration and reloads, the policy (zones -> compiled versions, zone
transfer both ways, feeds), the supervisor of the data-plane workers, the
single writer of the query and hit logs, DNSBL zones; the web parts (console,
APIs, block page, /metrics) and alerts run in the same process. See
docs/architecture.md.
"""

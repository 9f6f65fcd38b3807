"""Pure DNS helpers: no I/O, no event loop.

- ``wire``: the hand-written wire-format fast path (names, headers, OPT/EDE);
- ``serial``: SOA serial arithmetic (RFC 1982), the one place serials are compared.
"""

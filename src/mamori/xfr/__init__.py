"""Zone transfer: secondary (AXFR/IXFR/NOTIFY/TSIG client) and primary (serving published zones)."""

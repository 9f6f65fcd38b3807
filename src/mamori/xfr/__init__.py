"""Zone transfer: secondary (AXFR/IXFR/NOTIFY/TSIG client) and, later, primary."""

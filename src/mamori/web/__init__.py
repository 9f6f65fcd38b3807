"""HTTP side: the console, passive DNS APIs (CIRCL COF, DNSDB v2), block page, /metrics."""

"""HTTP side: the passive DNS APIs (CIRCL COF, DNSDB v2) and, later, the console."""

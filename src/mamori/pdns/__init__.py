"""Passive DNS: observations from sensors, aggregated into (rrname, rrtype, rdata) tuples."""

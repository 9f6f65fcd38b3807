"""Sensors: where observations come from (resolver tap, packet captures, dnstap)."""

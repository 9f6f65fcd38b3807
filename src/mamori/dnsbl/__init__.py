"""DNSBL: an authoritative DNS blocklist for mail servers, answering from feed entries."""

"""Threat feeds: fetch, parse, normalise, curate; published as RPZ, DNSBL and list datasets."""

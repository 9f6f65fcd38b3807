"""Threat feeds: parse, normalise, curate and publish datasets (work in progress)."""

"""mamori: DNS-layer threat defence (DNS firewall, threat datasets, passive DNS)."""

__version__ = "0.1.0"

"""Publishing feed data: as RPZ policy zones (rpz), as DNSBL zones (dnsbl)."""

"""The client's MAC address in a query's EDNS options, as LAN forwarders add it.

dnsmasq (and OpenWrt, whose DNS is dnsmasq) forwards queries with the
requestor's MAC address when run with ``--add-mac`` (not standardised):

- ``--add-mac``: option 65001, the raw hardware address (6 octets);
- ``--add-mac=text``: option 65073 (Nominum device id), ``aa:bb:cc:dd:ee:ff``;
- ``--add-mac=base64``: option 65073, the 6 octets in base64 (8 characters).

Pure: no I/O. Whoever may set the option is decided by the caller (the option
is trivially spoofed: ``[server] trust_client_mac``).
"""

from __future__ import annotations

import binascii
import re

OPTION_MAC = 65001  # dnsmasq EDNS0_OPTION_MAC: raw octets
OPTION_DEVICE_ID = 65073  # dnsmasq EDNS0_OPTION_NOMDEVICEID: text or base64 MAC
_TEXT_MAC = re.compile(rb"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def mac_text(octets: bytes) -> str:
    """6 octets -> ``aa:bb:cc:dd:ee:ff`` (lowercase, the form ``client_ids`` take)."""
    return ":".join(f"{b:02x}" for b in octets)


def client_mac(data: bytes, start: int, end: int) -> str:
    """The MAC address in the EDNS options ``data[start:end]`` (an OPT record's rdata),
    as ``aa:bb:cc:dd:ee:ff``; "" when there is none, or it is not 6 octets (a
    truncated option list ends the search: what parsed so far counts).

    Option 65001 (raw) wins over 65073 (text / base64) when both are present.
    """
    found = ""
    i = start
    while i + 4 <= end:
        code = data[i] << 8 | data[i + 1]
        ln = data[i + 2] << 8 | data[i + 3]
        i += 4
        if i + ln > end:
            break
        value = data[i : i + ln]
        i += ln
        if code == OPTION_MAC:
            if ln == 6:
                return mac_text(value)
        elif code == OPTION_DEVICE_ID and not found:
            if ln == 17 and _TEXT_MAC.fullmatch(value):
                found = value.decode().lower()
            elif ln == 8:
                try:
                    raw = binascii.a2b_base64(value, strict_mode=True)
                except binascii.Error:
                    continue
                if len(raw) == 6:
                    found = mac_text(raw)
    return found

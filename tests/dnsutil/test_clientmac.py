"""The EDNS client MAC as dnsmasq --add-mac sends it (raw, text, base64)."""

from __future__ import annotations

import base64
import struct

import pytest

from mamori.dnsutil.clientmac import OPTION_DEVICE_ID, OPTION_MAC, client_mac

MAC = bytes.fromhex("a0b1c2d3e4f5")


def _opts(*options: tuple[int, bytes]) -> bytes:
    return b"".join(struct.pack("!HH", code, len(v)) + v for code, v in options)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # --add-mac: option 65001, the 6 octets
        ([(OPTION_MAC, MAC)], "a0:b1:c2:d3:e4:f5"),
        # --add-mac=text: option 65073, hex with colons (dnsmasq prints lowercase)
        ([(OPTION_DEVICE_ID, b"a0:b1:c2:d3:e4:f5")], "a0:b1:c2:d3:e4:f5"),
        ([(OPTION_DEVICE_ID, b"A0:B1:C2:D3:E4:F5")], "a0:b1:c2:d3:e4:f5"),
        # --add-mac=base64: option 65073, 8 characters of base64
        ([(OPTION_DEVICE_ID, base64.b64encode(MAC))], "a0:b1:c2:d3:e4:f5"),
        # after other options (a cookie, ECS)
        ([(10, b"12345678"), (8, b"\x00\x01\x18\x00\xc0\x00\x02"), (OPTION_MAC, MAC)],
         "a0:b1:c2:d3:e4:f5"),
        # raw wins over text when both are there
        ([(OPTION_DEVICE_ID, b"00:00:00:00:00:01"), (OPTION_MAC, MAC)], "a0:b1:c2:d3:e4:f5"),
        # not a MAC: an EUI-64 (8 octets), text of the wrong shape, a CPE id, nothing
        ([(OPTION_MAC, MAC + b"\x00\x00")], ""),
        ([(OPTION_DEVICE_ID, b"a0-b1-c2-d3-e4-f5")], ""),
        ([(OPTION_DEVICE_ID, b"!!!!!!!!")], ""),
        ([(65074, b"cpe-id-1")], ""),
        ([], ""),
    ],
)  # fmt: skip
def test_client_mac_in_the_forms_dnsmasq_sends(
    options: list[tuple[int, bytes]], expected: str
) -> None:
    rdata = _opts(*options)
    data = b"\xff" * 7 + rdata + b"\xee"  # offsets inside a larger buffer
    assert client_mac(data, 7, 7 + len(rdata)) == expected


def test_a_truncated_option_list_keeps_what_parsed_and_never_reads_past_the_end() -> None:
    rdata = _opts((OPTION_DEVICE_ID, b"a0:b1:c2:d3:e4:f5")) + struct.pack("!HH", OPTION_MAC, 6)
    assert client_mac(rdata + MAC, 0, len(rdata) + 3) == "a0:b1:c2:d3:e4:f5"
    assert client_mac(rdata[:5], 0, 5) == ""

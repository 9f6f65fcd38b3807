"""``mamori profile``: configuration profiles that point devices at our encrypted DNS.

``mamori profile apple --client-id ID`` writes an Apple configuration profile
(``.mobileconfig``, a property list) with one DNS Settings payload
(``com.apple.dnsSettings.managed``, iOS/iPadOS 14+, macOS 11+): DNS over HTTPS
to ``https://{server_name}[:port]/dns-query/{ID}`` or DNS over TLS to server
name ``{ID}.{server_name}``, so the device is named in every query (the DoH
path, the TLS server name) and gets the policy of its ``[[group]]``.
"""

from __future__ import annotations

import ipaddress
import os
import plistlib
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import click

from mamori import config as config_mod
from mamori.cli.util import config_option, fail, load_config
from mamori.errors import MamoriError

PAYLOAD_TYPE = "com.apple.dnsSettings.managed"
_NAMESPACE = uuid.UUID("6f0c7f3e-3d1f-5c8e-9a57-6d616d6f7269")  # mamori's, for uuid5
_CLIENT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class ProfileError(MamoriError):
    """The profile cannot be made from this configuration or client id."""


def check_client_id(client_id: str) -> str:
    """A client id as a DNS label and URL path segment: letters, digits, inner hyphens,
    1-63 characters; lowercased. ProfileError otherwise."""
    cid = client_id.lower()
    if not _CLIENT_ID.fullmatch(cid):
        raise ProfileError(
            f"client id {client_id!r}: use 1-63 letters, digits and inner hyphens"
            " (it goes in a host name and a URL path)"
        )
    return cid


def _addresses(endpoints: tuple[config_mod.Endpoint, ...]) -> list[str]:
    """The addresses a phone can reach (not 0.0.0.0/::, not loopback)."""
    out = []
    for ep in endpoints:
        addr = ipaddress.ip_address(ep.host.split("%", maxsplit=1)[0])
        if not (addr.is_unspecified or addr.is_loopback) and str(addr) not in out:
            out.append(str(addr))
    return out


def apple_profile(cfg: config_mod.Config, client_id: str, transport: str = "doh") -> bytes:
    """The ``.mobileconfig`` (XML property list) for device *client_id* over *transport*
    ("doh" or "dot"). ProfileError without ``[tls] server_name`` or a listener of that
    transport, or for a bad client id. UUIDs are derived from the server name, client
    id and transport: the same profile twice is byte for byte the same."""
    cid = check_client_id(client_id)
    host = cfg.tls.server_name
    if not host:
        raise ProfileError("[tls] server_name is not set: the profile names the server by it")
    endpoints = cfg.server.doh if transport == "doh" else cfg.server.dot
    if not endpoints:
        raise ProfileError(f"[server] {transport} is empty: nothing serves {transport.upper()}")
    dns: dict[str, Any]
    if transport == "doh":
        port = endpoints[0].port
        authority = host if port == 443 else f"{host}:{port}"
        dns = {"DNSProtocol": "HTTPS", "ServerURL": f"https://{authority}/dns-query/{cid}"}
    else:
        # Apple's TLS settings have no port: DNS over TLS is on 853 (RFC 7858)
        if endpoints[0].port != 853:
            raise ProfileError(
                f"[server] dot listens on port {endpoints[0].port}: Apple devices only use 853"
            )
        dns = {"DNSProtocol": "TLS", "ServerName": f"{cid}.{host}"}
    addresses = _addresses(endpoints)
    if addresses:
        dns["ServerAddresses"] = addresses
    ident = f"{'.'.join(reversed(host.split('.')))}.mamori.{cid}.{transport}"
    label = f"{transport.upper()} {host} ({cid})"
    payload = {
        "PayloadType": PAYLOAD_TYPE,
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.dns",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"{ident}.dns")).upper(),
        "PayloadDisplayName": f"Encrypted DNS: {label}",
        "DNSSettings": dns,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, ident)).upper(),
        "PayloadDisplayName": f"mamori DNS protection: {cid}",
        "PayloadDescription": f"Sends this device's DNS queries to {host} over {label}.",
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Write *data* to *path* whole or not at all (a temporary file renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.group()
def profile() -> None:
    """Device configuration profiles for our encrypted DNS."""


@profile.command("apple")
@config_option
@click.option("--client-id", required=True, help="Device name (the DoH path / DoT name).")
@click.option("--transport", type=click.Choice(["doh", "dot"]), default="doh", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File (default: stdout).")
def profile_apple(config_path: str, client_id: str, transport: str, output: str | None) -> None:
    """Write an Apple .mobileconfig (iOS 14+, macOS 11+) naming this device CLIENT_ID."""
    cfg = load_config(config_path)
    try:
        data = apple_profile(cfg, client_id, transport)
        if output is None:
            click.echo(data.decode(), nl=False)
            return
        write_atomically(Path(output), data)
    except (MamoriError, OSError) as e:
        fail(e)
    click.echo(f"{output}: profile for {client_id.lower()} over {transport.upper()}", err=True)

"""Where alerts go: an HTTP webhook (JSON, or Slack's ``{"text": ...}``), syslog
(RFC 5424 over UDP, or TCP with octet counting; optionally CEF for SIEMs), e-mail."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from mamori import __version__
from mamori.config.alerts import SinkConfig
from mamori.store.privacy import NO_ADDRESS

SEVERITY = {"info": 6, "warning": 4, "critical": 2}  # syslog severities
CEF_SEVERITY = {"info": 3, "warning": 6, "critical": 9}
FACILITY = 16  # local0
SD_ID = "mamori@32473"  # 32473: the example enterprise number (RFC 5612)


@dataclass
class Alert:
    rule: str
    severity: str
    subject: str  # the client, feed, upstream or zone the alert is about
    message: str
    time: float
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "alert": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "time": datetime.fromtimestamp(self.time, UTC).isoformat().replace("+00:00", "Z"),
            "details": self.details,
        }


def send(sink: SinkConfig, alert: Alert) -> None:
    """Deliver *alert*; OSError (or smtplib's errors) when it could not be."""
    if sink.type == "webhook":
        _webhook(sink, alert)
    elif sink.type == "syslog":
        _syslog(sink, alert)
    else:
        _email(sink, alert)


def _webhook(sink: SinkConfig, alert: Alert) -> None:
    doc: dict[str, object] = (
        {"text": f"[mamori] {alert.severity}: {alert.message}"}
        if sink.format == "slack"
        else alert.as_dict()
    )
    req = urllib.request.Request(
        sink.url,
        data=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json", "User-Agent": f"mamori/{__version__}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=sink.timeout) as r:
        r.read()


def rfc5424(alert: Alert, cef: bool = False) -> bytes:
    pri = FACILITY * 8 + SEVERITY.get(alert.severity, 4)
    ts = datetime.fromtimestamp(alert.time, UTC).isoformat(timespec="milliseconds")
    host = socket.gethostname() or "-"
    params = {"rule": alert.rule, "subject": alert.subject, **alert.details}
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    msg = cef_line(alert) if cef else alert.message
    head = f"<{pri}>1 {ts.replace('+00:00', 'Z')} {host} mamori - {alert.rule[:32]} {sd} "
    return head.encode() + b"\xef\xbb\xbf" + msg.encode("utf-8")  # BOM: the MSG is UTF-8


def cef_line(alert: Alert) -> str:
    """ArcSight CEF: ``CEF:0|vendor|product|version|signature|name|severity|extension``."""

    def head(v: str) -> str:
        return v.replace("\\", "\\\\").replace("|", "\\|")

    def ext(v: str) -> str:
        return v.replace("\\", "\\\\").replace("=", "\\=").replace("\n", " ")

    d = alert.details
    fields = {"rt": str(int(alert.time * 1000)), "msg": alert.message}
    if d.get("client") and d["client"] != NO_ADDRESS:  # CEF's src is an address
        fields["src"] = d["client"]
    if d.get("name"):
        fields["dhost"] = d["name"]
    for i, key in enumerate(("zone", "category", "action"), 1):
        if d.get(key):
            fields[f"cs{i}Label"], fields[f"cs{i}"] = key, d[key]
    extension = " ".join(f"{k}={ext(v)}" for k, v in fields.items())
    return (
        f"CEF:0|mamori|mamori|{head(__version__)}|{head(alert.rule)}|{head(alert.message)}"
        f"|{CEF_SEVERITY.get(alert.severity, 6)}|{extension}"
    )


def _sd_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _syslog(sink: SinkConfig, alert: Alert) -> None:
    assert sink.address is not None
    data = rfc5424(alert, cef=sink.format == "cef")
    family = socket.AF_INET6 if ":" in sink.address.host else socket.AF_INET
    target = (sink.address.host, sink.address.port)
    if sink.protocol == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(data, target)
        return
    with socket.create_connection(target, timeout=sink.timeout) as s:
        s.sendall(f"{len(data)} ".encode() + data)  # RFC 6587 octet counting


def _email(sink: SinkConfig, alert: Alert) -> None:
    assert sink.smtp is not None
    msg = EmailMessage()
    msg["Subject"] = f"[mamori] {alert.severity}: {alert.message}"
    msg["From"] = sink.sender
    msg["To"] = ", ".join(sink.to)
    body = [alert.message, ""] + [f"{k}: {v}" for k, v in alert.as_dict().items() if k != "details"]
    body += [f"{k}: {v}" for k, v in alert.details.items()]
    msg.set_content("\n".join(body) + "\n")
    with smtplib.SMTP(sink.smtp.host, sink.smtp.port, timeout=sink.timeout) as smtp:
        if sink.starttls:
            smtp.starttls()
        if sink.user:
            smtp.login(sink.user, sink.password)
        smtp.send_message(msg)

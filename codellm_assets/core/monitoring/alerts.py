"""Alert delivery: a Slack-compatible webhook and/or email over SMTP. No Dagster here.

A broken channel never raises to the caller: each send returns a `Delivery` saying what happened, so a
sensor can log it and carry on with the next alert.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from codellm_assets.settings import AlertSettings

Kind = Literal["check_failed", "check_recovered", "run_failed", "canary_idle"]
_ICONS = {"check_failed": ":red_circle:", "check_recovered": ":large_green_circle:", "run_failed": ":x:",
          "canary_idle": ":warning:"}


@dataclass
class Alert:
    kind: Kind
    title: str                  # e.g. "scrubbed_corpus / no_leftover_secrets failed"
    asset: str | None = None
    check: str | None = None
    severity: str = "ERROR"
    partition: str | None = None
    figures: dict = field(default_factory=dict)
    run_url: str | None = None

    def text(self) -> str:
        lines = [f"{_ICONS[self.kind]} *{self.title}*"]
        where = ", ".join(f"{k}: {v}" for k, v in (("asset", self.asset), ("check", self.check),
                                                      ("partition", self.partition), ("severity", self.severity)) if v)
        lines.append(where)
        if self.figures:
            lines.append(", ".join(f"{k}={v}" for k, v in list(self.figures.items())[:8]))
        if self.run_url:
            lines.append(f"<{self.run_url}|open the run in Dagster>")
        return "\n".join(lines)

    def slack_payload(self) -> dict:
        """Slack incoming-webhook JSON: `text` for clients that read only that, blocks for the rest."""
        fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(self.figures.items())[:10]]
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": self.text()}}]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        return {"text": self.text(), "blocks": blocks,
                "codellm": {"kind": self.kind, "asset": self.asset, "check": self.check,
                            "severity": self.severity, "partition": self.partition, "figures": self.figures,
                            "run_url": self.run_url}}


@dataclass
class Delivery:
    channel: str
    ok: bool
    detail: str


def send_webhook(url: str, alert: Alert, timeout_s: float = 5.0) -> Delivery:
    body = json.dumps(alert.slack_payload(), default=str).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return Delivery("webhook", 200 <= resp.status < 300, f"HTTP {resp.status}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        return Delivery("webhook", False, f"{type(e).__name__}: {e}")


def send_email(smtp_host: str, smtp_port: int, sender: str, recipients: list[str], alert: Alert,
               timeout_s: float = 5.0) -> Delivery:
    msg = EmailMessage()
    msg["Subject"] = f"[codellm] {alert.title}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(alert.text().replace("*", ""))
    try:
        with smtplib.SMTP(smtp_host, smtp_port, timeout=timeout_s) as smtp:
            smtp.send_message(msg)
        return Delivery("smtp", True, f"sent to {len(recipients)} recipient(s)")
    except (OSError, smtplib.SMTPException) as e:
        return Delivery("smtp", False, f"{type(e).__name__}: {e}")


def deliver(alert: Alert, settings: AlertSettings) -> list[Delivery]:
    """Send to every configured channel; returns one Delivery per channel (none configured: empty)."""
    out = []
    if settings.webhook_url:
        out.append(send_webhook(settings.webhook_url, alert))
    if settings.smtp and settings.smtp.recipients:
        s = settings.smtp
        out.append(send_email(s.host, s.port, s.sender, s.recipients, alert))
    return out

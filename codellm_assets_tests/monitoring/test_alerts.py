"""Alert delivery to a real HTTP receiver and a real SMTP server (aiosmtpd) on loopback."""


import pytest
from aiosmtpd.controller import Controller

from codellm_assets.core.monitoring.alerts import Alert, deliver, send_webhook
from codellm_assets.settings import AlertSettings, SmtpSettings


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def smtp_server(free_port):
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port)
    controller.start()
    yield free_port, inbox
    controller.stop()


ALERT = Alert(kind="check_failed", title="scrubbed_corpus / no_leftover_secrets failed", asset="scrubbed_corpus",
              check="no_leftover_secrets", partition="payments", figures={"leftovers": 2},
              run_url="http://127.0.0.1:3000/runs/abc")


def test_webhook_and_email_delivered(webhook_receiver, smtp_server):
    url, received = webhook_receiver
    port, inbox = smtp_server
    settings = AlertSettings(webhook_url=url, smtp=SmtpSettings(host="127.0.0.1", port=port,
                                                                recipients=["ml-team@corp.test"]))
    deliveries = deliver(ALERT, settings)
    assert [d.ok for d in deliveries] == [True, True], deliveries
    [payload] = received
    assert "no_leftover_secrets" in payload["text"] and payload["codellm"]["figures"] == {"leftovers": 2}
    assert payload["codellm"]["run_url"].endswith("/runs/abc") and payload["blocks"]
    [mail] = inbox.messages
    assert "Subject: [codellm] scrubbed_corpus / no_leftover_secrets failed" in mail and "payments" in mail


def test_broken_channel_reports_instead_of_raising(free_port):
    d = send_webhook(f"http://127.0.0.1:{free_port}/nobody-listens", ALERT, timeout_s=1)
    assert not d.ok and d.detail
    assert deliver(ALERT, AlertSettings()) == []

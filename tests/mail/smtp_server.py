"""A real SMTP server on loopback (aiosmtpd) whose replies to MAIL, RCPT and DATA are scripted."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class ScriptedHandler:
    """Accepts mail, except where a reply is scripted for the next MAIL FROM or RCPT TO.

    ``rcpt[address]`` and ``mail_from`` are lists of replies used one per command; once a list
    is empty the command is accepted. ``received`` holds the messages the server took, parsed,
    with their envelope recipients.
    """

    def __init__(self) -> None:
        self.rcpt: dict[str, list[str]] = {}
        self.mail_from: list[str] = []
        self.received: list[tuple[list[str], Message]] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mail_from:
            return self.mail_from.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        replies = self.rcpt.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[ScriptedHandler]:
    """An SMTP server on 127.0.0.1 that Django's SMTP backend sends to for this test."""
    from django.core import mail

    handler = ScriptedHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        if hasattr(mail, "mailers"):
            settings.MAILERS = {
                "default": {
                    "BACKEND": SMTP_BACKEND,
                    "OPTIONS": {"host": "127.0.0.1", "port": controller.port, "timeout": 10},
                }
            }
        else:
            settings.EMAIL_BACKEND = SMTP_BACKEND
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = controller.port
        settings.EMAIL_TIMEOUT = 10
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield handler
    finally:
        controller.stop()

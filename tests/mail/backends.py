"""Email backends for the mail tests: scripted failures, and a slow one that counts sends."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend


def use_backend(settings: Any, path: str) -> None:
    """Send through the backend at ``path``: MAILERS on Django 6.1+, EMAIL_BACKEND before."""
    if hasattr(mail, "mailers"):
        settings.MAILERS = {"default": {"BACKEND": path}}
    else:
        settings.EMAIL_BACKEND = path


class ScriptedBackend(BaseEmailBackend):
    """Raises the exceptions of ``script`` one send at a time, then accepts messages."""

    script: list[BaseException] = []
    sent: list[Any] = []
    opens = 0

    def open(self) -> bool:
        ScriptedBackend.opens += 1
        return True

    def send_messages(self, email_messages: list[Any]) -> int:
        if ScriptedBackend.script:
            raise ScriptedBackend.script.pop(0)
        ScriptedBackend.sent.extend(email_messages)
        return len(email_messages)

    @classmethod
    def reset(cls, *errors: BaseException) -> None:
        cls.script = list(errors)
        cls.sent = []
        cls.opens = 0


class CountingBackend(BaseEmailBackend):
    """Takes a little time per message and counts the sends of each mail log id."""

    delay = 0.01
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def send_messages(self, email_messages: list[Any]) -> int:
        time.sleep(self.delay)
        with CountingBackend.lock:
            for message in email_messages:
                CountingBackend.counts[message.metadata["better_mail_id"]] += 1
        return len(email_messages)

"""Attachments in a MailLog's payload: encoded as JSON by send(), decoded again for delivery."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Mapping
from email.message import MIMEPart
from email.mime.base import MIMEBase
from typing import Any

import django

__all__ = ["decode", "encode"]


def encode(item: Any) -> dict[str, Any]:
    """A ``(filename, content, mimetype)`` tuple or a MIME part as a JSON-serialisable dict."""
    if isinstance(item, (MIMEBase, MIMEPart)):
        return {"mime": base64.b64encode(item.as_bytes()).decode("ascii")}
    try:
        filename, content, mimetype = item
    except (TypeError, ValueError):
        raise TypeError(
            f"Attachment {item!r} is not a (filename, content, mimetype) tuple or a MIME part."
        ) from None
    if isinstance(content, str):
        return {"filename": filename, "text": content, "mimetype": mimetype}
    return {
        "filename": filename,
        "base64": base64.b64encode(bytes(content)).decode("ascii"),
        "mimetype": mimetype,
    }


def decode(data: Mapping[str, Any]) -> Any:
    """What ``encode`` stored, as ``EmailMessage.attach()`` takes it: a MIME part or a tuple."""
    if "mime" in data:
        if django.VERSION >= (6, 0):
            # Django 6.0 attaches email.message.MIMEPart and deprecates MIMEBase parts.
            # typeshed pairs policy.default with EmailMessage; any Message class parses.
            return email.message_from_bytes(
                base64.b64decode(data["mime"]),
                _class=MIMEPart,  # type: ignore[arg-type]
                policy=email.policy.default,
            )
        parsed = email.message_from_bytes(base64.b64decode(data["mime"]))
        maintype, _, subtype = parsed.get_content_type().partition("/")
        part = MIMEBase(maintype, subtype)
        for header in ("Content-Type", "MIME-Version"):
            del part[header]
        for header, value in parsed.items():
            part[header] = value
        part.set_payload(parsed.get_payload())
        return part
    content = data["text"] if "text" in data else base64.b64decode(data["base64"])
    return (data["filename"], content, data["mimetype"])

"""Who may sign in by email: address patterns, and whether magic link codes can be delivered."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from better_console.conf import ConsoleConfig


def split_emails(value: Any) -> tuple[str, ...]:
    """Patterns from a list or a comma-separated string, stripped and lowercased."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(str(item).strip().lower() for item in items if str(item).strip())


def email_allowed(email: str, patterns: tuple[str, ...]) -> bool:
    """True when ``email`` matches one pattern; ``*`` matches any run of characters.

    Refused whatever the patterns: an address with more than one ``@`` (a quoted local part
    such as ``"x@evil.example"@example.com``, which ``*@example.com`` would otherwise match),
    and one holding a non-ASCII character that lowercases to ASCII (the Kelvin sign, ``K``,
    becomes ``k``), so that a look-alike never matches the address it imitates.
    """
    email = email.strip()
    if email.count("@") != 1 or any(not c.isascii() and c.lower().isascii() for c in email):
        return False
    email = email.lower()
    return any(_glob(pattern).fullmatch(email) for pattern in patterns)


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    # Only "*" is special: fnmatch would also give meaning to "?" and "[...]".
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def delivery_available(config: ConsoleConfig) -> bool:
    """True when magic link codes can be sent (SEND_CODE, or better_mail installed)."""
    from django.apps import apps

    link = config.magic_link
    return link is not None and (link.send_code is not None or apps.is_installed("better_mail"))

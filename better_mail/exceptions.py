"""Errors of better_mail: each says what is wrong and what to do."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class MailError(Exception):
    """Base class of better_mail's errors."""


class TemplateNotFound(MailError, LookupError):
    """No template is registered under a name."""


class TemplateDefinitionError(MailError, ImproperlyConfigured):
    """A template class is declared wrongly (reserved variable name, no body, duplicate name)."""


class TemplateVariableError(MailError, TypeError):
    """The variables given to a template are missing, unknown or of the wrong type."""

    def __init__(self, message: str, *, template: str, variable: str, expected: str = "") -> None:
        super().__init__(message)
        self.template = template
        self.variable = variable
        self.expected = expected


class TemplateCompileError(MailError, ValueError):
    """A template's Jinja2 or MJML source does not compile."""

    def __init__(self, message: str, *, template: str) -> None:
        super().__init__(message)
        self.template = template


class MailConfigurationError(MailError, ImproperlyConfigured):
    """``settings.BETTER_MAIL`` holds a value better_mail cannot use."""


class TransientSendError(MailError):
    """A send failed in a way that may succeed later (the task retries it)."""


class PermanentSendError(MailError):
    """A send failed in a way that retrying cannot fix (the log is marked failed)."""


class InvalidRecipient(MailError, ValueError):
    """An address given to send() is not an email address."""


class UnknownBackend(MailError, ValueError):
    """send(backend=...) names an alias that ``BETTER_MAIL['BACKENDS']`` does not define."""

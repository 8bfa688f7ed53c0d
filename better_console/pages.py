"""The HTML page a sign-in mail's link opens: whether the sign-in was verified, and what next."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpResponse
from django.template.loader import render_to_string
from django.templatetags.static import static

STYLESHEET = "better_console/verification.css"


def _style_source() -> str:
    """The CSP source of the stylesheet: its origin when static files live elsewhere (a CDN)."""
    parts = urlsplit(static(STYLESHEET))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "'self'"


def verification_page(*, ok: bool, detail: str = "", status: int = 200) -> HttpResponse:
    """The page for a verified sign-in (200), or for a refused one with its reason and status."""
    if ok:
        title, detail = "Sign-in verified", "Return to the console: it is signing you in now."
    else:
        title = "Sign-in not verified"
    html = render_to_string("better_console/verification.html", {"title": title, "detail": detail})
    response = HttpResponse(html, status=status, content_type="text/html; charset=utf-8")
    # The URL holds a code: keep the page out of caches and away from other sites' referrers.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    # The page runs no script and loads only its stylesheet; a strict policy costs it nothing.
    response["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {_style_source()}; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return response

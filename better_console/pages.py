"""The HTML page a sign-in mail's link opens: whether the sign-in was verified, and what next."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils.html import format_html

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ margin: 0; min-height: 100vh; display: grid; place-items: center;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; background: #f4f5f7;
       color: #1f2933; }}
main {{ max-width: 26rem; padding: 2rem; text-align: center; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; }}
p {{ color: #52606d; margin: 0; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{detail}</p>
</main>
</body>
</html>
"""


def verification_page(*, ok: bool, detail: str = "", status: int = 200) -> HttpResponse:
    """The page for a verified sign-in (200), or for a refused one with its reason and status."""
    if ok:
        title, detail = "Sign-in verified", "Return to the console: it is signing you in now."
    else:
        title = "Sign-in not verified"
    html = format_html(_PAGE, title=title, detail=detail)
    response = HttpResponse(html, status=status, content_type="text/html; charset=utf-8")
    # The URL holds a code: keep the page out of caches and away from other sites' referrers.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    return response

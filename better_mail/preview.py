"""Previews of the registered mail templates: shared rendering, the admin's pages and a WSGI server.

``preview(name)`` renders one template with its preview data and never raises for a template
problem: validation, Jinja2 and MJML errors end up in ``Preview.errors`` so that a page can show
them. ``PreviewApp`` is a small WSGI application (list, preview page, raw HTML, text) served by
``manage.py better_mail preview``; the admin renders the same fragments inside its own pages.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler, WSGIServer
from django.template import Context, Engine

from better_mail.exceptions import MailError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
GMAIL_CLIP_KB = 102


@dataclass
class Preview:
    """One template rendered with its preview data, or the reasons it could not be."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    subject: str = ""
    html: str = ""
    text: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def html_kb(self) -> float:
        return len(self.html.encode("utf-8")) / 1024

    @property
    def clipped(self) -> bool:
        """True when Gmail would clip the HTML part (it shows only the first 102 KB)."""
        return self.html_kb > GMAIL_CLIP_KB

    @property
    def data_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True, default=str)


def template_names() -> list[str]:
    """The names of every registered template, sorted."""
    from better_mail.templates import registry

    return registry.names()


def preview_data(template: Any) -> dict[str, Any]:
    """The sample variables a template declares for previews and test sends (a copy)."""
    data = getattr(template, "preview_data", None)
    if callable(data):
        data = data()
    return dict(data or {})


def preview(name: str, data: Mapping[str, Any] | None = None, *, lint: bool = True) -> Preview:
    """Render the template ``name`` with its preview data updated by ``data``.

    Raises ``TemplateNotFound`` for an unknown name; every other problem of the template is
    reported in the result's ``errors`` (and MJML lint findings in ``warnings``).
    """
    from better_mail.templates import get_template

    template = get_template(name)
    result = Preview(name=name)
    try:
        result.data = {**preview_data(template), **(data or {})}
    except Exception as exc:  # a preview_data hook is user code; show what it raised
        result.errors.append(_describe(exc, "preview_data"))
        return result
    try:
        rendered = _render(template, result.data)
    except MailError as exc:
        result.errors.append(_describe(exc))
    except Exception as exc:  # a filter or property of the template failed; show where
        result.errors.append(_describe(exc) + "\n\n" + traceback.format_exc(limit=-3))
    else:
        result.subject, result.html, result.text = rendered.subject, rendered.html, rendered.text
        result.data = dict(rendered.context)  # with the defaults filled in
    if lint:
        try:
            found = _lint(template)
        except Exception as exc:  # lint is advisory; its failure must not hide the preview
            found = [f"lint could not run: {_describe(exc)}"]
        prefix = f"{name}: "
        for problem in found:
            problem = problem.removeprefix(prefix)
            # lint renders the preview data too; that failure is already in errors.
            if not (result.errors and problem.startswith("rendering preview_data fails")):
                result.warnings.append(problem)
    return result


def previews(names: Iterable[str] | None = None, *, lint: bool = True) -> list[Preview]:
    """``preview()`` of every registered template (or of ``names``), in name order."""
    return [preview(name, lint=lint) for name in (template_names() if names is None else names)]


def _render(template: Any, data: dict[str, Any]) -> Any:
    return template.render(data)


def _lint(template: Any) -> list[str]:
    from better_mail.lint import lint

    return lint(template)


def _describe(exc: BaseException, where: str = "") -> str:
    prefix = f"{where}: " if where else ""
    return f"{prefix}{type(exc).__name__}: {exc}"


# --- the standalone server -----------------------------------------------------------------------


class PreviewApp:
    """WSGI app: ``/`` lists the templates, ``/<name>/`` previews one, ``/<name>/html`` and
    ``/<name>/text`` serve its parts alone. Nothing is cached: every request renders anew, so an
    edited template shows on reload (with the autoreloader restarting on code changes)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")

    @cached_property
    def engine(self) -> Engine:
        # Its own engine: the server must not depend on the project's TEMPLATES setting.
        return Engine(dirs=[str(TEMPLATE_DIR)], autoescape=True)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return self._respond(start_response, "405 Method Not Allowed", "text/plain", "GET only")
        status, content_type, body = self.dispatch(path)
        return self._respond(start_response, status, content_type, body)

    def dispatch(self, path: str) -> tuple[str, str, str]:
        parts = [unquote(part) for part in path.strip("/").split("/") if part]
        if not parts:
            return "200 OK", "text/html", self._page("index", "Templates")
        name, view = parts[0], (parts[1] if len(parts) > 1 else "")
        if len(parts) > 2 or view not in ("", "html", "text"):
            return self._missing(f"There is no page {path!r}.")
        from better_mail.exceptions import TemplateNotFound

        try:
            result = preview(name, lint=view == "")
        except TemplateNotFound:
            return self._missing(f"No mail template is registered as {name!r}.")
        if view == "html":
            if not result.ok:
                return "500 Internal Server Error", "text/plain", "\n\n".join(result.errors)
            return "200 OK", "text/html", result.html
        if view == "text":
            if not result.ok:
                return "500 Internal Server Error", "text/plain", "\n\n".join(result.errors)
            return "200 OK", "text/plain", result.text
        return "200 OK", "text/html", self._page("preview", name, result)

    def url(self, name: str = "", view: str = "") -> str:
        if not name:
            return f"{self.prefix}/"
        return f"{self.prefix}/{quote(name, safe='')}/{view}"

    def _page(self, page: str, title: str, result: Preview | None = None, **extra: Any) -> str:
        names = template_names()
        context: dict[str, Any] = {
            "page": page,
            "title": title,
            "count": len(names),
            "index_url": self.url(),
            **extra,
        }
        if page == "index":
            context["previews"] = [
                {"preview": item, "url": self.url(item.name)} for item in previews(names)
            ]
        if result is not None:
            context.update(
                preview=result,
                html_url=self.url(result.name, "html"),
                text_url=self.url(result.name, "text"),
            )
        template = self.engine.get_template("better_mail/preview/base.html")
        return template.render(Context(context))

    def _missing(self, message: str) -> tuple[str, str, str]:
        return "404 Not Found", "text/html", self._page("missing", "Not found", message=message)

    @staticmethod
    def _respond(
        start_response: Callable[..., Any], status: str, content_type: str, body: str
    ) -> list[bytes]:
        payload = body.encode("utf-8")
        start_response(
            status,
            [
                ("Content-Type", f"{content_type}; charset=utf-8"),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [payload]


def make_server(host: str = "127.0.0.1", port: int = 8025, *, threading: bool = True) -> WSGIServer:
    """A WSGI server bound to ``host:port`` (port 0 picks a free one) serving ``PreviewApp``."""
    server_cls = ThreadedWSGIServer if threading else WSGIServer
    server = server_cls((host, port), WSGIRequestHandler, ipv6=":" in host)
    server.set_app(PreviewApp())
    return server

"""The preview server: every template answers, width toggle, text view, errors shown on the page."""

from __future__ import annotations

import html
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from better_mail.preview import PreviewApp, make_server, preview, template_names
from better_mail.templates import MailTemplate, registry

GOOD, INVALID, UNDEFINED, BAD_MJML = (
    "preview_welcome",
    "preview_invalid_data",
    "preview_undefined",
    "preview_bad_mjml",
)


@dataclass
class Defined:
    good: type[MailTemplate]
    invalid: type[MailTemplate]
    undefined: type[MailTemplate]
    bad_mjml: type[MailTemplate]


def define_templates() -> Defined:
    """Four templates: one that renders, and one per kind of failure a preview must show."""

    class Welcome(MailTemplate):
        name = GOOD
        subject = "Welcome to {{ product }}, {{ user_name }}"
        user_name: str
        product: str = "Acme"
        plan_names: list[str] = []
        mjml = """
<mjml><mj-body><mj-section><mj-column>
  <mj-text>Hello {{ user_name }}, welcome aboard.</mj-text>
  {% for plan in plan_names %}<mj-text>Plan: {{ plan }}</mj-text>{% endfor %}
  <mj-button href="https://acme.example/start">Get started</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
        preview_data = {"user_name": "Ada <Lovelace>", "plan_names": ["Team", "Scale"]}

    class InvalidData(MailTemplate):
        name = INVALID
        subject = "You have {{ seats }} seats"
        seats: int
        mjml = "<mjml><mj-body><mj-section><mj-column><mj-text>{{ seats }}</mj-text>"
        mjml += "</mj-column></mj-section></mj-body></mjml>"
        preview_data = {"seats": "three"}

    class Undefined(MailTemplate):
        name = UNDEFINED
        subject = "Hi"
        mjml = "<mjml><mj-body><mj-section><mj-column><mj-text>{{ ghost }}</mj-text>"
        mjml += "</mj-column></mj-section></mj-body></mjml>"

    class BadMjml(MailTemplate):
        name = BAD_MJML
        subject = "Broken markup"
        mjml = "<mjml><mj-body><mj-section><mj-colum><mj-text>typo</mj-text></mj-colum>"
        mjml += "</mj-section></mj-body></mjml>"

    return Defined(Welcome, InvalidData, Undefined, BadMjml)


@pytest.fixture
def templates() -> Iterator[Defined]:
    defined = define_templates()
    yield defined
    for name in (GOOD, INVALID, UNDEFINED, BAD_MJML):
        registry.unregister(name)


@pytest.fixture
def server(templates: Defined) -> Iterator[str]:
    """The preview server on 127.0.0.1 at a free port, serving from a thread."""
    httpd = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_every_registered_template_answers_over_http(server):
    names = template_names()
    assert {GOOD, INVALID, UNDEFINED, BAD_MJML} <= set(names)
    status, content_type, index = get(server + "/")
    assert status == 200 and content_type.startswith("text/html")
    for name in names:
        assert f'href="/{name}/"' in index
        status, _, page = get(f"{server}/{name}/")
        assert status == 200, name
        assert f"<title>{name} · mail preview</title>" in page


def test_page_shows_subject_html_in_iframe_with_width_toggle_and_text(server):
    status, _, page = get(f"{server}/{GOOD}/")
    assert status == 200
    # Subject rendered with the preview data, escaped for the page.
    assert "Welcome to Acme, Ada &lt;Lovelace&gt;" in page
    assert re.search(r"· HTML \d+\.\d KB</span>", page)  # size, below Gmail's clipping limit
    # The HTML part is in a sandboxed iframe's srcdoc (escaped once more inside the attribute).
    srcdoc = page.split('srcdoc="', 1)[1].split('"></iframe>', 1)[0]
    # Sandboxed: no scripts, no same-origin access; links may open in a new tab.
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    rendered = html.unescape(srcdoc)
    assert rendered.lstrip().lower().startswith("<!doctype html")
    assert "Hello Ada &lt;Lovelace&gt;, welcome aboard." in rendered
    assert "Plan: Scale" in rendered
    # Mobile and desktop widths: radio toggles and the CSS that applies them.
    assert 'id="mp-mobile"' in page and 'id="mp-desktop"' in page
    assert "Mobile (375 px)" in page and "Desktop (700 px)" in page
    assert "#mp-mobile:checked ~ .mp-stage .mp-frame { width: 375px; }" in page
    # No external assets: no stylesheet links, no remote scripts.
    assert "<link" not in page and "src=" not in page.replace(srcdoc, "")
    # The text part and the preview data (defaults filled in).
    assert "Text part" in page
    assert "Hello Ada &lt;Lovelace&gt;, welcome aboard." in page.split("Text part", 1)[1]
    assert "&quot;product&quot;: &quot;Acme&quot;" in page


def test_html_and_text_views_serve_the_parts_alone(server):
    status, content_type, body = get(f"{server}/{GOOD}/html")
    assert status == 200 and content_type == "text/html; charset=utf-8"
    assert "Hello Ada &lt;Lovelace&gt;, welcome aboard." in body
    status, content_type, body = get(f"{server}/{GOOD}/text")
    assert status == 200 and content_type == "text/plain; charset=utf-8"
    assert "Hello Ada <Lovelace>, welcome aboard." in body
    assert "Get started (https://acme.example/start)" in body
    assert "<" not in body.replace("<Lovelace>", "")


def test_validation_error_is_shown_on_the_page(server):
    status, _, page = get(f"{server}/{INVALID}/")
    assert status == 200
    assert "does not render with its preview data" in page
    assert "TemplateVariableError" in page
    assert "variable &#x27;seats&#x27; must be int, got str" in page
    assert "<iframe" not in page
    status, _, body = get(f"{server}/{INVALID}/html")
    assert status == 500 and "must be int" in body


def test_undefined_variable_and_lint_are_shown(server):
    status, _, page = get(f"{server}/{UNDEFINED}/")
    assert status == 200
    assert "TemplateVariableError" in page and "ghost" in page
    # lint's own finding is listed; its repeat of the render failure is not.
    assert "which is not a declared variable" in page
    assert "rendering preview_data fails" not in page


def test_mjml_problem_is_shown_and_the_list_marks_failures(server):
    status, _, page = get(f"{server}/{BAD_MJML}/")
    assert status == 200
    assert "unknown MJML tag &lt;mj-colum&gt;" in page
    status, _, index = get(server + "/")
    row = index.split(f'href="/{INVALID}/"', 1)[1].split("</tr>", 1)[0]
    assert "✗" in html.unescape(row) and "must be int" in row
    good_row = index.split(f'href="/{GOOD}/"', 1)[1].split("</tr>", 1)[0]
    assert "✓ renders" in html.unescape(good_row)


def test_unknown_pages_are_404_and_only_get_is_served(server, templates):
    assert get(f"{server}/no_such_template/")[0] == 404
    status, _, page = get(f"{server}/{GOOD}/pdf")
    assert status == 404 and "There is no page" in page
    request = urllib.request.Request(f"{server}/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405


def test_app_works_in_process_and_renders_anew_on_every_request(templates):
    app = PreviewApp()
    status, _, page = app.dispatch(f"/{GOOD}/")
    assert status == "200 OK" and "Ada &lt;Lovelace&gt;" in page
    # Nothing is cached between requests: a changed template shows on the next one.
    templates.good.preview_data = {"user_name": "Grace"}
    try:
        assert "Welcome to Acme, Grace" in app.dispatch(f"/{GOOD}/")[2]
    finally:
        templates.good.preview_data = {"user_name": "Ada <Lovelace>"}


def test_preview_function_overrides_and_reports(templates):
    result = preview(GOOD, {"user_name": "Linus"})
    assert result.ok and result.subject == "Welcome to Acme, Linus"
    assert result.data["plan_names"] == ["Team", "Scale"]
    assert not result.clipped
    assert preview(GOOD, {"plan_names": ["x" * 1000] * 120}).clipped
    failed = preview(INVALID)
    assert not failed.ok and failed.html == "" and "must be int" in failed.errors[0]

"""Templates: declared variables and their validation, MJML to HTML, CSS, text, lint, registry."""

from __future__ import annotations

import datetime
import html
import re
from dataclasses import dataclass
from typing import Any, TypedDict

import markupsafe
import pytest

from better_console.mail import ConsoleMagicLinkEmail
from better_mail import compiler, plaintext, templates
from better_mail.exceptions import (
    TemplateCompileError,
    TemplateDefinitionError,
    TemplateNotFound,
    TemplateVariableError,
)
from better_mail.lint import VALID_MJML_TAGS, lint
from better_mail.templates import MailTemplate, get_template, registry


@dataclass
class Item:
    title: str
    quantity: int


class Address(TypedDict):
    city: str
    zip: str


class OrderShipped(MailTemplate):
    name = "test_order_shipped"
    customer: str
    order_number: int
    total: float
    express: bool = False
    items: list[Item] = []
    address: Address | None = None
    shipped_on: datetime.date
    tracking_url: str | None
    notes: dict[str, str] = {}

    subject = "Order #{{ order_number }} shipped, {{ customer }}"
    mjml = """<mjml>
  <mj-head>
    <mj-title>Shipped</mj-title>
    <mj-preview>Your order is on its way</mj-preview>
    <mj-style inline="inline">.lead div { letter-spacing: 3px; }</mj-style>
    <mj-style>.footer { color: #999999; }</mj-style>
  </mj-head>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text css-class="lead"><p>Hello {{ customer }},</p></mj-text>
        <mj-text>
          <p>Order {{ order_number }} ({{ "%.2f"|format(total) }} EUR) left on
          {{ shipped_on.isoformat() }}{% if express %}, express{% endif %}.</p>
          <ul>{% for item in items %}<li>{{ item.title }} x {{ item.quantity }}</li>
          {% endfor %}</ul>
          {% if address %}<p>To {{ address.city }} {{ address.zip }}</p>{% endif %}
        </mj-text>
        {% if tracking_url %}
        <mj-button href="{{ tracking_url }}">Track the parcel</mj-button>
        {% endif %}
        <mj-divider />
        <mj-text css-class="footer">Thanks &amp; goodbye</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>"""

    @classmethod
    def preview_data(cls) -> dict[str, Any]:
        return {
            "customer": "Ada",
            "order_number": 1042,
            "total": 99.5,
            "shipped_on": datetime.date(2026, 1, 2),
            "tracking_url": "https://track.example.com/1042",
        }


BODY = (
    "<mjml><mj-body><mj-section><mj-column><mj-text>{}</mj-text></mj-column></mj-section>"
    "</mj-body></mjml>"
)
VALID = {
    "customer": "Ada",
    "order_number": 7,
    "total": 12,
    "shipped_on": datetime.date(2026, 3, 4),
    "items": [Item("Pen", 2), {"title": "Ink", "quantity": 1}],
    "address": {"city": "Lyon", "zip": "69001"},
    "tracking_url": "https://track.example.com/?id=7&lang=fr",
}


@pytest.fixture
def temporary():
    """Unregisters the templates a test defines."""
    names: list[str] = []
    yield names
    for name in names:
        registry.unregister(name)


def rendered(**changes: Any) -> compiler.RenderedMail:
    return OrderShipped.render({**VALID, **changes})


# Variables -------------------------------------------------------------------------------------


def test_variables_are_the_annotations_in_order_with_defaults():
    variables = OrderShipped.variables()
    assert list(variables) == [
        "customer",
        "order_number",
        "total",
        "express",
        "items",
        "address",
        "shipped_on",
        "tracking_url",
        "notes",
    ]
    assert variables["customer"].required and variables["customer"].type_name == "str"
    assert variables["express"].default is False
    # An optional variable without a default is None when not given.
    assert not variables["tracking_url"].required
    assert variables["tracking_url"].default is None
    assert variables["items"].type_name == "list[Item]"


@pytest.mark.parametrize(
    ("changes", "variable", "expected"),
    [
        ({"customer": 5}, "customer", "str"),
        ({"order_number": "7"}, "order_number", "int"),
        ({"order_number": True}, "order_number", "int"),
        ({"total": "12.0"}, "total", "float"),
        ({"express": 1}, "express", "bool"),
        ({"shipped_on": "2026-03-04"}, "shipped_on", "date"),
        ({"items": "Pen"}, "items", "list[Item]"),
        ({"items": [Item("Pen", "2")]}, "items[0].quantity", "int"),
        ({"items": [Item("Pen", 1), {"title": "Ink"}]}, "items[1].quantity", "int"),
        ({"address": {"city": "Lyon"}}, "address.zip", "str"),
        ({"address": {"city": "Lyon", "zip": 69001}}, "address.zip", "str"),
        ({"tracking_url": 3}, "tracking_url", "str | None"),
        ({"notes": {"a": 1}}, "notes['a']", "str"),
    ],
)
def test_a_wrong_type_names_the_variable_and_the_expected_type(changes, variable, expected):
    with pytest.raises(TemplateVariableError) as caught:
        rendered(**changes)
    assert caught.value.variable == variable
    assert caught.value.expected == expected
    assert caught.value.template == "test_order_shipped"
    assert repr(variable) in str(caught.value) and expected in str(caught.value)


def test_a_missing_variable_is_named_with_its_type():
    values = dict(VALID)
    del values["order_number"]
    with pytest.raises(
        TemplateVariableError, match=r"missing variable 'order_number' \(expected int\)"
    ):
        OrderShipped.render(values)


def test_an_unknown_variable_is_named_with_the_declared_ones():
    with pytest.raises(TemplateVariableError) as caught:
        rendered(custmer="Ada")
    assert caught.value.variable == "custmer"
    assert "declared: customer, order_number" in str(caught.value)


def test_valid_values_pass_including_none_int_as_float_and_datetime_as_date():
    result = rendered(
        tracking_url=None,
        address=None,
        total=3,
        shipped_on=datetime.datetime(2026, 3, 4, 10, 0, tzinfo=datetime.UTC),
    )
    assert "Track the parcel" not in result.html
    assert "3.00 EUR" in result.text


def test_mutable_defaults_are_not_shared_between_renders():
    first = OrderShipped.validate({k: v for k, v in VALID.items() if k != "items"})
    first["items"].append(Item("x", 1))
    second = OrderShipped.validate({k: v for k, v in VALID.items() if k != "items"})
    assert second["items"] == []


# HTML ------------------------------------------------------------------------------------------


def test_html_holds_the_escaped_values_and_the_subject_is_plain_text():
    result = rendered(customer="<Ada & Bob>")
    assert "Hello &lt;Ada &amp; Bob&gt;," in result.html
    assert "<Ada & Bob>" not in result.html
    assert result.subject == "Order #7 shipped, <Ada & Bob>"
    assert "Lyon 69001" in result.html
    assert "Pen x 2" in result.html and "Ink x 1" in result.html
    assert 'href="https://track.example.com/?id=7&amp;lang=fr"' in result.html


def test_inline_mj_style_is_inlined_and_other_styles_stay_in_the_head():
    result = rendered()
    lead = re.search(r'<td[^>]*class="lead"[^>]*>\s*<div style="([^"]*)"', result.html)
    assert lead is not None and "letter-spacing: 3px" in lead.group(1)
    # The non-inline block is kept as a <style> rule only, and the inline block's rule is gone.
    assert ".footer { color: #999999; }" in result.html
    assert ".lead div" not in result.html
    # Media queries of the responsive layout survive inlining.
    assert "@media only screen" in result.html


FONT_SOURCE = (
    '<mjml><mj-head><mj-attributes><mj-all font-family="Inter, Arial" /></mj-attributes>'
    '</mj-head><mj-body><mj-section><mj-column><mj-text font-family="Ubuntu, Arial">x</mj-text>'
    "<mj-text>y</mj-text></mj-column></mj-section></mj-body></mjml>"
)


def test_no_remote_font_link_unless_fonts_are_configured(settings):
    import mjml

    # mjml-python's own default links Google Fonts for the fonts it knows (Ubuntu here).
    assert "fonts.googleapis.com" in mjml.mjml2html(FONT_SOURCE)
    assert "<link" not in compiler.compile_mjml(FONT_SOURCE)
    assert "<link" not in rendered().html and "fonts.googleapis" not in rendered().html
    settings.BETTER_MAIL = {"FONTS": {"Inter": "https://fonts.example.com/inter.css"}}
    configured = compiler.compile_mjml(FONT_SOURCE)
    assert '<link href="https://fonts.example.com/inter.css"' in configured
    assert "fonts.googleapis.com" not in configured


def test_inline_css_all_inlines_every_style_block(settings):
    settings.BETTER_MAIL = {"INLINE_CSS": "all"}
    result = rendered()
    footer = re.search(r'<td[^>]*class="footer"[^>]*style="([^"]*)"', result.html)
    assert footer is not None and "color: #999999" in footer.group(1)


def test_compile_errors_name_the_template(temporary):
    class Broken(MailTemplate):
        name = "test_broken_mjml"
        subject = "x"
        mjml = "<mjml><mj-body><mj-section><mj-column><mj-text>x</mj-column></mjml>"

    temporary.append(Broken.name)
    with pytest.raises(TemplateCompileError) as caught:
        Broken.render()
    assert caught.value.template == "test_broken_mjml"
    assert "test_broken_mjml" in str(caught.value)

    class BadJinja(MailTemplate):
        name = "test_bad_jinja"
        subject = "{{ oops"
        mjml = "<mjml><mj-body></mj-body></mjml>"

    temporary.append(BadJinja.name)
    with pytest.raises(TemplateCompileError, match=r"test_bad_jinja.*subject at line 1"):
        BadJinja.render()


def test_an_undeclared_name_in_the_template_is_a_variable_error(temporary):
    class Undeclared(MailTemplate):
        name = "test_undeclared"
        subject = "Hi"
        mjml = BODY.format("{{ who }}")

    temporary.append(Undeclared.name)
    with pytest.raises(TemplateVariableError) as caught:
        Undeclared.render()
    assert caught.value.variable == "who"


# Precompiled path ------------------------------------------------------------------------------


def _normalized(markup: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", markup))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"customer": 'O\'Brien "<b>" & co', "express": True, "items": []},
        {"tracking_url": None, "address": None, "notes": {"k": "v"}},
    ],
)
def test_the_precompiled_html_and_text_equal_the_full_pipeline(changes):
    assert compiler.is_precompiled(OrderShipped)
    values = OrderShipped.validate({**VALID, **changes})
    fast = OrderShipped.render(values)
    source = compiler.compile_template(OrderShipped).body.render(values)
    assert _normalized(fast.html) == _normalized(compiler.compile_mjml(source))
    assert fast.text == plaintext.mjml_to_text(source)
    assert fast.mjml == source


class Statement(MailTemplate):
    name = "test_statement"
    period: str
    lines: list[tuple[str, str]]
    contact: str = "billing@example.com"
    subject = "Statement {{ period }}"
    # The title is repeated by MJML (aria-label); the loop runs over table rows.
    mjml = """<mjml><mj-head><mj-title>Statement {{ period }}</mj-title>
<mj-style inline="inline">.rows td { padding: 4px; }
.rows tr.sum td { font-weight: bold; }</mj-style>
</mj-head><mj-body><mj-section><mj-column>
<mj-table css-class="rows"><tr><th>What</th><th>Amount</th></tr>
{% for what, amount in lines %}<tr><td>{{ what }}</td><td>{{ amount }}</td></tr>{% endfor %}
<tr class="sum"><td>Total</td><td>{{ lines|length }} lines</td></tr></mj-table>
<mj-text>Write to <a href="mailto:{{ contact }}" title="{{ contact }}">{{ contact }}</a>.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
    preview_data = {"period": "2026-01", "lines": [("Plan", "10.00")]}


@pytest.mark.parametrize("count", [0, 1, 4])
def test_loops_over_table_rows_are_precompiled_faithfully(count):
    assert compiler.is_precompiled(Statement)
    values = Statement.validate(
        period="Q1 <'26>", lines=[(f"Item & {n}", f"{n}.00") for n in range(count)]
    )
    fast = Statement.render(values)
    source = compiler.compile_template(Statement).body.render(values)
    assert _normalized(fast.html) == _normalized(compiler.compile_mjml(source))
    assert fast.text == plaintext.mjml_to_text(source)
    assert fast.html.count("Statement Q1 &lt;&#39;26&gt;") == 2
    assert len(re.findall(r'<td style="padding: 4px;?">Item &amp; \d</td>', fast.html)) == count


def test_templates_with_layout_markup_use_the_full_pipeline(temporary):
    class Columns(MailTemplate):
        name = "test_dynamic_columns"
        subject = "x"
        count: int
        # Jinja2 inside a layout attribute and around columns: MJML must see the values.
        mjml = """<mjml><mj-body><mj-section padding="{{ count }}px">{% for i in range(count) %}
<mj-column><mj-text>col {{ i }}</mj-text></mj-column>{% endfor %}</mj-section></mj-body></mjml>"""

    temporary.append(Columns.name)
    assert not compiler.is_precompiled(Columns)
    result = Columns.render(count=2)
    assert "mj-column-per-50" in result.html and "padding:2px" in result.html.replace(" ", "")
    assert "col 0" in result.text and "col 1" in result.text


def test_markup_values_go_through_the_full_pipeline(temporary):
    class Rich(MailTemplate):
        name = "test_rich"
        subject = "x"
        body: str
        mjml = """<mjml><mj-head><mj-style inline="inline">.hl { color: #00aa00; }</mj-style>
</mj-head><mj-body><mj-section><mj-column><mj-text>{{ body }}</mj-text></mj-column></mj-section>
</mj-body></mjml>"""

    temporary.append(Rich.name)
    assert compiler.is_precompiled(Rich)
    result = Rich.render(body=markupsafe.Markup('<span class="hl">green</span>'))
    assert re.search(r'<span class="hl" style="color: #00aa00;?">green</span>', result.html)
    assert "<span" not in result.text and "green" in result.text
    plain = Rich.render(body='<span class="hl">green</span>')
    assert "&lt;span" in plain.html


# Text ------------------------------------------------------------------------------------------


def test_the_generated_text_has_paragraphs_items_and_link_urls():
    text = rendered(express=True).text
    assert text.startswith("Hello Ada,\n\nOrder 7 (12.00 EUR) left on 2026-03-04, express.")
    assert "- Pen x 2\n- Ink x 1" in text
    assert "Track the parcel (https://track.example.com/?id=7&lang=fr)" in text
    assert "Thanks & goodbye" in text
    # Head content (title, preview, styles) is not part of the text.
    assert "Shipped" not in text and "on its way" not in text and "color" not in text
    assert "<" not in text


def test_a_text_template_replaces_the_generated_text(temporary):
    class WithText(MailTemplate):
        name = "test_with_text"
        who: str
        subject = "Hi {{ who }}"
        mjml = BODY.format("Hi {{ who }}")
        text = "Plain hello, {{ who }} & <friends>\n"

    temporary.append(WithText.name)
    assert WithText.render(who="Ada").text == "Plain hello, Ada & <friends>\n"


def test_mjml_to_text_handles_breaks_images_and_entities():
    source = (
        '<mjml><mj-body><mj-section><mj-column><mj-image src="a.png" alt="Logo" />'
        '<mj-text>one<br>two &lt;3&gt; <a href="mailto:x@example.com">write</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    assert plaintext.mjml_to_text(source) == "[Logo]\n\none\ntwo <3> write (x@example.com)\n"


# Lint ------------------------------------------------------------------------------------------


def test_lint_flags_unknown_tags_remote_css_missing_alt_and_undeclared_names(temporary):
    class Sloppy(MailTemplate):
        name = "test_sloppy"
        subject = "Hi {{ nobody }}"
        mjml = """<mjml><mj-head><mj-style>@import url("https://fonts.example.com/x.css");</mj-style>
</mj-head><mj-body><mj-section><mj-colum><mj-text>x</mj-text></mj-colum>
<mj-column><mj-image src="a.png" /><mj-buton href="#">go</mj-buton><mj-include path="x"/>
</mj-column>
</mj-section></mj-body></mjml>"""

    temporary.append(Sloppy.name)
    problems = lint(Sloppy)
    joined = "\n".join(problems)
    assert "unknown MJML tag <mj-colum> at line 2" in joined
    assert "unknown MJML tag <mj-buton> at line 3" in joined
    assert "remote stylesheet" in joined
    assert "<mj-image> at line 3 has no alt text" in joined
    assert "the subject uses 'nobody'" in joined
    assert "<mj-include> at line 3 is not resolved" in joined
    assert all(problem.startswith("test_sloppy:") for problem in problems)


def test_lint_of_good_templates_is_empty():
    assert lint(OrderShipped) == []
    assert lint("console_magic_link") == []


def test_every_valid_tag_of_the_list_is_accepted_by_mjml_python():
    assert {
        "mj-section",
        "mj-column",
        "mj-text",
        "mj-button",
        "mj-raw",
    } <= VALID_MJML_TAGS
    assert "mj-foo" not in VALID_MJML_TAGS


# Registry and definition -----------------------------------------------------------------------


def test_templates_register_under_their_name_or_the_snake_case_class_name(temporary):
    class PasswordResetEmail(MailTemplate):
        subject = "Reset"
        mjml = "<mjml><mj-body></mj-body></mjml>"

    temporary.append("password_reset_email")
    assert get_template("password_reset_email") is PasswordResetEmail
    assert get_template(OrderShipped) is OrderShipped
    assert "test_order_shipped" in registry.names()
    assert templates.render("test_order_shipped", VALID).subject.startswith("Order #7")


def test_an_unknown_name_lists_the_registered_templates():
    with pytest.raises(TemplateNotFound, match=r"no_such_mail.*test_order_shipped"):
        get_template("no_such_mail")


def test_two_classes_cannot_share_a_name(temporary):
    class First(MailTemplate):
        name = "test_shared_name"
        subject = "a"
        mjml = "<mjml><mj-body></mj-body></mjml>"

    temporary.append("test_shared_name")

    def define_other():
        class Second(MailTemplate):
            name = "test_shared_name"
            subject = "b"
            mjml = "<mjml><mj-body></mj-body></mjml>"

    with pytest.raises(TemplateDefinitionError, match="Two mail templates are named"):
        define_other()
    assert get_template("test_shared_name") is First


def test_definition_errors_are_raised_when_the_class_is_defined():
    with pytest.raises(TemplateDefinitionError, match="'subject' configures the template"):

        class Clash(MailTemplate):
            subject: str = "x"
            mjml = "<mjml></mjml>"

    with pytest.raises(TemplateDefinitionError, match="has no body"):

        class NoBody(MailTemplate):
            subject = "x"


def test_abstract_bases_are_not_registered_and_share_variables(temporary):
    class Branded(MailTemplate):
        abstract = True
        brand: str = "Acme"

    class Hello(Branded):
        name = "test_branded_hello"
        who: str
        subject = "{{ brand }} says hi to {{ who }}"
        mjml = "<mjml><mj-body></mj-body></mjml>"

    temporary.append(Hello.name)
    assert "branded" not in registry
    assert list(Hello.variables()) == ["brand", "who"]
    assert Hello.render(who="Ada").subject == "Acme says hi to Ada"


def test_mjml_file_is_read_and_missing_files_are_explained(tmp_path, temporary):
    path = tmp_path / "invite.mjml"
    path.write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>Join {{ team }}</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>"
    )

    class Invite(MailTemplate):
        name = "test_invite_file"
        team: str
        subject = "Join {{ team }}"
        mjml_file = str(path)

    class Relative(MailTemplate):
        name = "test_relative_file"
        subject = "x"
        mjml_file = "missing.mjml"

    temporary.extend([Invite.name, Relative.name])
    assert "Join Core" in Invite.render(team="Core").html
    with pytest.raises(TemplateDefinitionError, match="not part of an installed app"):
        Relative.render()


def test_preview_data_fills_defaults_and_is_validated():
    data = OrderShipped.get_preview_data()
    assert data["customer"] == "Ada" and data["items"] == [] and data["express"] is False
    preview = OrderShipped.render_preview()
    assert "Track the parcel" in preview.html


def test_the_console_magic_link_template_is_discovered_and_renders():
    assert get_template("console_magic_link") is ConsoleMagicLinkEmail
    result = ConsoleMagicLinkEmail.render(code="493021", expires_minutes=1)
    assert result.subject == "Your console sign-in code"
    assert "493021" in result.html and "Open the console" not in result.html
    assert "expires in 1 minute." in result.text
    with_link = ConsoleMagicLinkEmail.render(
        code="1", expires_minutes=15, console_url="https://example.com/console"
    )
    assert "Open the console (https://example.com/console)" in with_link.text
    with pytest.raises(TemplateVariableError, match="'expires_minutes' must be int"):
        ConsoleMagicLinkEmail.render(code="1", expires_minutes="15")


# System checks ---------------------------------------------------------------------------------


def _ids(messages) -> list[str]:
    return sorted(message.id for message in messages)


def test_system_checks_name_bad_settings(settings):
    from better_mail.checks import check_settings, check_templates

    assert check_settings() == []
    settings.BETTER_MAIL = {"RATE_LIMT": "1/s", "INLINE_CSS": "some", "FONTS": ["Inter"]}
    assert _ids(check_settings()) == ["better_mail.E001", "better_mail.E003", "better_mail.E004"]
    settings.BETTER_MAIL = {"RATE_LIMIT": "fast"}
    # The test settings use LocMemCache: a per-process count is flagged too.
    assert _ids(check_settings()) == ["better_mail.E002", "better_mail.W002"]
    assert [error for error in check_templates() if error.obj is OrderShipped] == []


def test_a_template_with_broken_jinja_fails_the_system_check(temporary):
    from better_mail.checks import check_templates

    class Unclosed(MailTemplate):
        name = "test_unclosed_block"
        subject = "x"
        mjml = BODY.format("{% if x %}never closed")

    temporary.append(Unclosed.name)
    [error] = [error for error in check_templates() if error.obj is Unclosed]
    assert error.id == "better_mail.E005" and "test_unclosed_block" in error.msg


def test_templates_extend_layouts_from_the_mail_folders(tmp_path, monkeypatch, temporary):
    (tmp_path / "layout.mjml").write_text(
        "<mjml><mj-body><mj-section><mj-column>{% block content %}{% endblock %}"
        "<mj-text>Sent by {{ brand }}</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    monkeypatch.setattr(compiler, "mail_dirs", lambda: [tmp_path])
    compiler.clear_caches()

    class FromLayout(MailTemplate):
        name = "test_from_layout"
        brand: str = "Acme"
        who: str
        subject = "Hi {{ who }}"
        mjml = """{% extends "layout.mjml" %}{% block content %}
<mj-text>Hello {{ who }}</mj-text>{% endblock %}"""

    temporary.append(FromLayout.name)
    try:
        result = FromLayout.render(who="Ada")
        assert not compiler.is_precompiled(FromLayout)
        assert "Hello Ada" in result.html and "Sent by Acme" in result.html
        assert result.text == "Hello Ada\n\nSent by Acme\n"
    finally:
        compiler.clear_caches()

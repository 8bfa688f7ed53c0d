"""Lint of mail templates: the problems that rendering does not report."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import jinja2.meta

from better_mail.compiler import compile_template, environment
from better_mail.exceptions import (
    TemplateCompileError,
    TemplateDefinitionError,
    TemplateVariableError,
)

if TYPE_CHECKING:
    from better_mail.templates import MailTemplate

__all__ = ["VALID_MJML_TAGS", "lint"]

# Tags of MJML 4 (https://documentation.mjml.io). mjml-python renders an unknown mj- tag as raw
# markup without complaint, so lint() compares against this list.
VALID_MJML_TAGS = frozenset(
    {
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-include",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-raw",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    }
)

_MJ_TAG = re.compile(r"</?(mj-[\w-]+|mjml)\b([^>]*)>", re.I)
_REMOTE_CSS = re.compile(r"@import\s+(url\()?\s*[\"']?https?:|<link\b[^>]*stylesheet", re.I)


def lint(template: str | type[MailTemplate]) -> list[str]:
    """Problems of a template that rendering does not report: unknown mj- tags, remote fonts,
    undeclared or unresolvable variables, images without alt text, preview data that fails.

    A body that extends a layout or includes other templates is checked as rendered with its
    preview data (the MJML that mjml-python compiles), a body on its own as written.
    """
    # Imported here: better_mail.templates imports this module.
    from better_mail.templates import get_template

    cls = get_template(template)
    problems: list[str] = []
    prefix = f"{cls.name}:"
    try:
        source = cls.mjml_source()
    except TemplateDefinitionError as exc:
        return [f"{prefix} {exc}"]
    env = environment(True)
    try:
        compile_template(cls)
        # A body that extends a layout or includes parts is MJML only once Jinja2 has put the
        # pieces together: its own source lacks <mjml> and the tags of the layout.
        composed = bool(list(jinja2.meta.find_referenced_templates(env.parse(source))))
    except TemplateCompileError as exc:
        return [*_lint_mjml(source, prefix, ""), f"{prefix} {exc}"]
    declared = set(cls.variables())
    parts = [("subject", cls.subject), ("body", source), ("text", cls.text_source())]
    for part, text in parts:
        if text is None:
            continue
        used = jinja2.meta.find_undeclared_variables(env.parse(text))
        for name in sorted(used - declared - set(env.globals)):
            problems.append(
                f"{prefix} the {part} uses {name!r}, which is not a declared variable. "
                "Declare it with a type annotation."
            )
    try:
        preview = cls.render_preview()
    except (TemplateVariableError, TemplateCompileError) as exc:
        problems.append(f"{prefix} rendering preview_data fails: {exc}")
        # The source's own tags are still checked; whether the whole is an <mjml> document is
        # known only after the render that just failed.
        problems[:0] = _lint_mjml(source, prefix, "", whole=not composed)
        return problems
    if composed:
        # The MJML that mjml-python compiles: the layout with the blocks and includes filled in
        # by Jinja2 (with the preview data). Its lines are those of the rendered MJML.
        problems[:0] = _lint_mjml(preview.mjml, prefix, " of the rendered MJML")
    else:
        # A body on its own is checked as written: line numbers are the author's, and tags in
        # branches the preview data does not take are checked too.
        problems[:0] = _lint_mjml(source, prefix, "")
    if re.search(r"<link\b[^>]*fonts\.googleapis", preview.html):
        problems.append(f"{prefix} the rendered HTML links a remote font.")
    return problems


def _lint_mjml(mjml: str, prefix: str, where: str, *, whole: bool = True) -> list[str]:
    """Problems of MJML markup: unknown or unsupported tags, images without alt, remote CSS.

    ``where`` follows each line number (which text it counts in); ``whole`` is False for a part
    of a document (a block of a layout), which need not hold the <mjml> root.
    """
    problems: list[str] = []
    for match in _MJ_TAG.finditer(mjml):
        tag = match.group(1).lower()
        number = mjml.count("\n", 0, match.start()) + 1
        line = f"line {number}{where}"
        if tag not in VALID_MJML_TAGS:
            problems.append(
                f"{prefix} unknown MJML tag <{tag}> at {line} (mjml-python outputs it as "
                "raw markup). Check the spelling against the MJML components."
            )
        elif tag == "mj-include" and not match.group(0).startswith("</"):
            problems.append(
                f"{prefix} <mj-include> at {line} is not resolved by better_mail; use "
                "Jinja2's {% include %} or {% extends %} (they search the apps' mail/ folders)."
            )
        elif tag == "mj-font" and not match.group(0).startswith("</"):
            problems.append(
                f"{prefix} <mj-font> at {line} links a remote font; configure fonts "
                "in BETTER_MAIL['FONTS'] instead so that they are an explicit choice."
            )
        elif (
            tag == "mj-image"
            and not match.group(0).startswith("</")
            and not re.search(r"\balt\s*=", match.group(2))
        ):
            problems.append(f"{prefix} <mj-image> at {line} has no alt text.")
    if _REMOTE_CSS.search(mjml):
        problems.append(
            f"{prefix} the MJML loads a remote stylesheet (@import or <link>); mail clients "
            "block it. Put the CSS in <mj-style>."
        )
    if whole and "<mjml" not in mjml:
        problems.append(f"{prefix} the body does not start with <mjml>.")
    return problems

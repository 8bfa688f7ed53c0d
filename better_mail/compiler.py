"""Compiling and rendering templates: Jinja2 environments, MJML to HTML with CSS inlined."""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe
import mjml as mjml_lib

from better_mail.exceptions import TemplateCompileError, TemplateVariableError
from better_mail.plaintext import mjml_to_text, tidy_text

if TYPE_CHECKING:
    from better_mail.templates import MailTemplate

__all__ = [
    "Compiled",
    "RenderedMail",
    "clear_caches",
    "compile_mjml",
    "compile_template",
    "environment",
    "forget",
    "is_precompiled",
    "mail_dirs",
    "render_template",
]


@dataclasses.dataclass(frozen=True)
class RenderedMail:
    """A rendered template: subject, HTML (CSS inlined), plain text, and the MJML it came from."""

    template: str
    subject: str
    html: str
    text: str
    context: dict[str, Any]
    _mjml: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def mjml(self) -> str:
        """The MJML after Jinja2 (rendered on demand when the HTML came from the precompiled
        template)."""
        if self._mjml is not None:
            return self._mjml
        # Imported here: better_mail.templates imports this module.
        from better_mail.templates import get_template

        compiled = compile_template(get_template(self.template))
        return compiled.body.render(self.context)


# Jinja2 --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Compiled:
    """The Jinja2 templates of a template class: subject, MJML body, text (if it has one)."""

    subject: jinja2.Template
    body: jinja2.Template
    text: jinja2.Template | None
    # The precompiled form (see _precompile); None when the template needs the full pipeline.
    fast_html: jinja2.Template | None = None
    fast_text: jinja2.Template | None = None


_COMPILED: dict[Any, Compiled] = {}
_ENVIRONMENTS: dict[bool, jinja2.Environment] = {}
_env_lock = threading.Lock()


def mail_dirs() -> list[Path]:
    """The ``mail/`` folders of the installed apps (searched by ``{% include %}``/``extends``)."""
    from django.apps import apps

    return [
        Path(config.path) / "mail"
        for config in apps.get_app_configs()
        if (Path(config.path) / "mail").is_dir()
    ]


def environment(autoescape: bool = True) -> jinja2.Environment:
    """The Jinja2 environment for HTML (autoescaped) or for subject and text (not escaped)."""
    env = _ENVIRONMENTS.get(autoescape)
    if env is None:
        with _env_lock:
            env = _ENVIRONMENTS.get(autoescape)
            if env is None:
                env = jinja2.Environment(
                    loader=jinja2.FileSystemLoader([str(path) for path in mail_dirs()]),
                    autoescape=autoescape,
                    undefined=jinja2.StrictUndefined,
                    keep_trailing_newline=True,
                    auto_reload=False,
                )
                _ENVIRONMENTS[autoescape] = env
    return env


def forget(template: type[MailTemplate] | None) -> None:
    """Drop the compiled form of ``template`` (redefined or unregistered)."""
    _COMPILED.pop(template, None)


def clear_caches() -> None:
    """Forget compiled templates and Jinja2 environments (after editing template files)."""
    _COMPILED.clear()
    _ENVIRONMENTS.clear()
    _inliner.cache_clear()


def compile_template(template: type[MailTemplate]) -> Compiled:
    """The Jinja2 templates of a template class, compiled once and cached."""
    compiled = _COMPILED.get(template)
    if compiled is not None:
        return compiled
    html_env, text_env = environment(True), environment(False)
    part = "subject"
    try:
        subject = text_env.from_string(template.subject)
        part = template.mjml_file or "mjml"
        body = html_env.from_string(template.mjml_source())
        text_source = template.text_source()
        part = template.text_file or "text"
        text = text_env.from_string(text_source) if text_source is not None else None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateCompileError(
            f"Mail template {template.name!r}: Jinja2 syntax error in {part} at line "
            f"{exc.lineno}: {exc.message}.",
            template=template.name,
        ) from exc
    compiled = Compiled(subject, body, text)
    precompiled = _precompile(template.mjml_source(), template.name)
    if precompiled is not None:
        compiled.fast_html, compiled.fast_text = precompiled
    _COMPILED[template] = compiled
    return compiled


# Rendering pipeline --------------------------------------------------------------------------

_INLINE_STYLE = re.compile(
    r"<mj-style\b[^>]*\binline\s*=\s*[\"']inline[\"'][^>]*>(.*?)</mj-style\s*>", re.S | re.I
)


def render_template(template: type[MailTemplate], values: dict[str, Any]) -> RenderedMail:
    """Render a template with validated variables: subject, HTML (CSS inlined) and text."""
    compiled = compile_template(template)
    # Markup values are HTML to embed: the full pipeline styles them and turns them into text.
    markup = any(isinstance(value, markupsafe.Markup) for value in values.values())
    fast_html = None if markup else compiled.fast_html
    source: str | None = None
    html: str | None = None
    text: str | None = None
    part = "subject"
    try:
        subject = compiled.subject.render(values)
        part = "body"
        if fast_html is not None:
            html = fast_html.render(values)
        else:
            source = compiled.body.render(values)
        part = "text"
        if compiled.text is not None:
            text = compiled.text.render(values).strip() + "\n"
        elif fast_html is not None and compiled.fast_text is not None:
            text = tidy_text(compiled.fast_text.render(values))
    except jinja2.UndefinedError as exc:
        raise TemplateVariableError(
            f"Mail template {template.name!r}: the {part} uses something undefined "
            f"({exc.message}). Declare the variable on the class or fix the template.",
            template=template.name,
            variable=_undefined_name(exc.message or ""),
        ) from exc
    except jinja2.TemplateError as exc:
        raise TemplateCompileError(
            f"Mail template {template.name!r}: rendering the {part} failed: {exc}.",
            template=template.name,
        ) from exc
    if source is not None:
        html = compile_mjml(source, template.name)
        if text is None:
            text = mjml_to_text(source)
    # Without an MJML source the fast path rendered both (_precompile makes them together).
    assert html is not None and text is not None
    return RenderedMail(
        template=template.name,
        subject=" ".join(subject.split()),
        html=html,
        text=text,
        context=values,
        _mjml=source,
    )


def compile_mjml(source: str, template_name: str = "<mjml>") -> str:
    """MJML to HTML with mjml-python, then CSS inlining per ``BETTER_MAIL['INLINE_CSS']``."""
    from better_mail.conf import mail_settings

    mode = mail_settings.INLINE_CSS
    # mjml-python ignores <mj-style inline="inline">: take those rules out and inline them here.
    inline_css = ""
    if mode and "inline" in source:
        blocks = _INLINE_STYLE.findall(source)
        if blocks:
            inline_css = "\n".join(blocks)
            source = _INLINE_STYLE.sub("", source)
    fonts = mail_settings.FONTS
    try:
        html = mjml_lib.mjml2html(source, fonts=dict(fonts) if fonts else {})
    except (ValueError, RuntimeError) as exc:
        raise TemplateCompileError(
            f"Mail template {template_name!r}: the MJML does not compile ({exc}). Check the "
            "nesting of mj- tags (mjml > mj-body > mj-section > mj-column > content).",
            template=template_name,
        ) from exc
    if mode == "all" or inline_css:
        html = _inliner(inline_css, mode == "all").inline(html)
    return html


@functools.lru_cache(maxsize=256)
def _inliner(extra_css: str, style_tags: bool) -> Any:
    import css_inline

    return css_inline.CSSInliner(
        inline_style_tags=style_tags,
        # Media queries and client hacks only work from <style>: keep the tags.
        keep_style_tags=True,
        keep_link_tags=True,
        load_remote_stylesheets=False,
        extra_css=extra_css or None,
    )


def _undefined_name(message: str) -> str:
    match = re.search(r"'([^']+)' is undefined|has no attribute '([^']+)'", message)
    if not match:
        return ""
    return match.group(1) or match.group(2)


# Precompiled templates -----------------------------------------------------------------------
#
# mjml2html, CSS inlining and the HTML-to-text pass cost more than the Jinja2 render. When all
# Jinja2 markup of a body sits where MJML copies it through unchanged (text of content
# components, link and image URLs, {% if %}/{% for %} around the components of a column), the
# MJML is compiled once with the markup replaced by placeholders; the HTML (CSS inlined) and the
# text are then Jinja2 templates rendered per mail. The result is checked when it is built:
# every placeholder must come out exactly once and in order, else the full pipeline is used.

_JINJA_TOKEN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_UNSUPPORTED_BLOCK = re.compile(
    r"^\{%-?\s*(extends|include|import|from|macro|call|raw|block|filter)\b"
)
_PLACEHOLDER = "bmjph{}x"
_PLACEHOLDER_RE = re.compile(r"bmjph(\d+)x")
_SCAN = re.compile(r"<!--.*?-->|<(/?)([a-zA-Z][\w:.-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>", re.S)
# Components whose content mjml-python copies through as HTML.
_CONTENT_TAGS = frozenset(
    {
        "mj-text",
        "mj-button",
        "mj-table",
        "mj-raw",
        "mj-navbar-link",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-social-element",
    }
)
_LABEL_TAGS = frozenset({"mj-title", "mj-preview"})
_URL_ATTRIBUTES = frozenset({"href", "src", "alt"})
# Attributes of HTML inside content that CSS inlining reads or rewrites.
_STYLED_ATTRIBUTES = frozenset({"style", "class", "id"})


def is_precompiled(template: str | type[MailTemplate]) -> bool:
    """True when the template renders from its precompiled HTML (no MJML compile per mail)."""
    # Imported here: better_mail.templates imports this module.
    from better_mail.templates import get_template

    return compile_template(get_template(template)).fast_html is not None


def _precompile(source: str, template_name: str) -> tuple[jinja2.Template, jinja2.Template] | None:
    """The (HTML, text) Jinja2 templates of a body, or None when it needs the full pipeline."""
    tokens = [match.group(0) for match in _JINJA_TOKEN.finditer(source)]
    if "bmjph" in source or any(_UNSUPPORTED_BLOCK.match(token) for token in tokens):
        return None
    counter = iter(range(len(tokens)))
    marked = _JINJA_TOKEN.sub(lambda _: _PLACEHOLDER.format(next(counter)), source)
    mjml_source = _place(marked, tokens)
    if mjml_source is None:
        return None
    try:
        html = compile_mjml(mjml_source, template_name)
    except TemplateCompileError:
        return None
    if not _placeholders_intact(html, tokens):
        return None

    def restore(text: str) -> str:
        text = re.sub(r"<!--\s*bmjph(\d+)x\s*-->", lambda m: tokens[int(m.group(1))], text)
        return _PLACEHOLDER_RE.sub(lambda m: tokens[int(m.group(1))], text)

    try:
        html_template = environment(True).from_string(restore(html))
        text_template = environment(False).from_string(restore(mjml_to_text(marked)))
    except jinja2.TemplateSyntaxError:
        return None
    return html_template, text_template


def _placeholders_intact(html: str, tokens: list[str]) -> bool:
    """Every token came out, block tags once and in order, each expression in its block.

    MJML may repeat a value (the title is also the body's aria-label): an expression may come
    out more than once, as long as each copy sits between the same block tags as in the source.
    """
    blocks = [i for i, token in enumerate(tokens) if not token.startswith("{{")]
    found = [int(number) for number in _PLACEHOLDER_RE.findall(html)]
    if [i for i in found if i in blocks] != blocks or set(found) != set(range(len(tokens))):
        return False
    block_set = set(blocks)

    def enclosing(index: int) -> int:
        return max((b for b in blocks if b < index), default=-1)

    last_block = -1
    for i in found:
        if i in block_set:
            last_block = i
        elif last_block != enclosing(i):
            return False
    return True


def _place(marked: str, tokens: list[str]) -> str | None:
    """The MJML to compile: block tags as comments (wrapped in mj-raw between components).

    None when a placeholder sits where MJML would interpret it (a layout attribute, a tag name,
    text outside content components).
    """
    out: list[str] = []
    stack: list[str] = []
    content_depth = 0
    position = 0

    def text_part(text: str) -> str | None:
        parent = stack[-1] if stack else ""
        pieces: list[str] = []
        last = 0
        for match in _PLACEHOLDER_RE.finditer(text):
            pieces.append(text[last : match.start()])
            last = match.end()
            token = tokens[int(match.group(1))]
            is_block = not token.startswith("{{")
            if content_depth:
                pieces.append(f"<!--{match.group(0)}-->" if is_block else match.group(0))
            elif parent in _LABEL_TAGS and not is_block:
                pieces.append(match.group(0))
            elif parent == "mj-column" and is_block:
                pieces.append(f"<mj-raw><!--{match.group(0)}--></mj-raw>")
            else:
                return None
        pieces.append(text[last:])
        return "".join(pieces)

    for match in _SCAN.finditer(marked):
        chunk = text_part(marked[position : match.start()])
        if chunk is None:
            return None
        out.append(chunk)
        position = match.end()
        whole, closing, tag, attrs = match.group(0), match.group(1), match.group(2), match.group(3)
        if tag is None:  # a comment: a placeholder inside it stays commented out
            out.append(whole)
            continue
        tag = tag.lower()
        if "bmjph" in tag:
            return None
        is_mj = tag.startswith("mj-") or tag == "mjml"
        if attrs and "bmjph" in attrs:
            for name, value in re.findall(r"([\w:.-]+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", attrs):
                if "bmjph" not in value:
                    continue
                allowed = (
                    name.lower() in _URL_ATTRIBUTES
                    if is_mj and not content_depth
                    else content_depth and name.lower() not in _STYLED_ATTRIBUTES
                )
                if not allowed:
                    return None
            if "bmjph" in re.sub(r"([\w:.-]+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", "", attrs):
                return None
        out.append(whole)
        self_closing = attrs.rstrip().endswith("/")
        if content_depth:
            if is_mj and tag in _CONTENT_TAGS and closing:
                content_depth -= 1
                if stack:
                    stack.pop()
            continue
        if not is_mj or self_closing:
            continue
        if closing:
            while stack and stack.pop() != tag:
                pass
        else:
            stack.append(tag)
            if tag in _CONTENT_TAGS:
                content_depth = 1
    chunk = text_part(marked[position:])
    if chunk is None:
        return None
    out.append(chunk)
    return "".join(out)

"""Plain text from MJML or HTML: paragraphs, list items, and links as ``text (url)``."""

from __future__ import annotations

import html as html_module
import re

__all__ = ["mjml_to_text", "tidy_text"]

_TOKEN = re.compile(
    r"<!--.*?-->|<!\[CDATA\[(.*?)\]\]>|<(/?)([a-zA-Z][\w:.-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
    r"|([^<]+)|<",
    re.S,
)
_ATTRIBUTE = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))")
_SKIPPED = frozenset(
    {
        "mj-head",
        "head",
        "style",
        "script",
        "title",
        "mj-style",
        "mj-attributes",
        "mj-title",
        "mj-preview",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
    }
)
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "ul",
        "ol",
        "blockquote",
        "pre",
        "section",
        "header",
        "footer",
        "mj-text",
        "mj-section",
        "mj-column",
        "mj-wrapper",
        "mj-hero",
        "mj-group",
        "mj-table",
        "mj-raw",
        "mj-button",
        "mj-image",
        "mj-navbar",
        "mj-social",
        "mj-accordion-element",
    }
)


def mjml_to_text(source: str) -> str:
    """A plain-text rendering of MJML (or HTML): paragraphs, list items, links as ``text (url)``."""
    out: list[str] = []
    skip = 0
    links: list[tuple[str, int]] = []
    for match in _TOKEN.finditer(source):
        cdata, closing, tag, attrs, text = match.groups()
        if text is not None or cdata is not None:
            if not skip:
                chunk = text or cdata
                if "&" in chunk:
                    chunk = html_module.unescape(chunk)
                # Collapse whitespace like a browser, keeping one space at each end.
                words = " ".join(chunk.split())
                if words:
                    head = " " if chunk[0].isspace() else ""
                    tail = " " if chunk[-1].isspace() else ""
                    out.append(f"{head}{words}{tail}")
                elif chunk:
                    out.append(" ")
            continue
        if tag is None:
            continue
        tag = tag.lower()
        if tag in _SKIPPED:
            if closing:
                skip = max(skip - 1, 0)
            elif not attrs.rstrip().endswith("/"):
                skip += 1
            continue
        if skip:
            continue
        if closing:
            if tag in ("a", "mj-button", "mj-navbar-link", "mj-social-element") and links:
                href, start = links.pop()
                label = "".join(out[start:]).strip()
                if href and href != label and not href.startswith("#"):
                    shown = href[7:] if href.startswith("mailto:") else href
                    out.append(f" ({shown})" if label else shown)
            if tag in _BLOCKS:
                out.append("\n")
            continue
        attributes = {
            key.lower(): html_module.unescape(dq or sq or bare or "")
            for key, dq, sq, bare in _ATTRIBUTE.findall(attrs or "")
        }
        if tag == "br":
            out.append("\n")
        elif tag in ("hr", "mj-divider"):
            out.append("\n\n---\n\n")
        elif tag == "li":
            out.append("\n- ")
        elif tag in _BLOCKS:
            out.append("\n\n" if tag in ("p", "mj-text", "h1", "h2", "h3", "mj-button") else "\n")
        elif tag in ("td", "th"):
            out.append(" ")
        if tag in ("img", "mj-image") and attributes.get("alt"):
            out.append(f"[{attributes['alt']}]")
        if tag in ("a", "mj-button", "mj-navbar-link", "mj-social-element"):
            links.append((attributes.get("href", ""), len(out)))
    return tidy_text("".join(out))


def tidy_text(text: str) -> str:
    """Lines stripped, at most one blank line in a row, one newline at the end (none if empty)."""
    lines = [line.strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n" if text else ""

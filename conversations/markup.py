"""Text that people write and other people read: notes in markdown, @mentions, template placeholders.

Pure functions, no database.

Security: a note is written by one agent and shown, as HTML, to others (and supervisors). So the
rendered HTML is built in two independent layers:
1. Python-Markdown with its raw-HTML handling switched off, so `<script>` typed in a note comes out
   as the text "&lt;script&gt;", never as a tag;
2. nh3 (the Rust `ammonia` sanitiser) with a short allow-list of tags and attributes and only
   http, https and mailto links, which removes whatever the first layer might let through
   (`[x](javascript:…)`, event handlers, unknown tags).
"""

import re

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}

# `@` preceded by nothing word-like (so "ada@example.com" is not a mention), then a Django username.
MENTION = re.compile(r"(?<![\w@.+-])@([\w.@+-]*[\w])")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+\.[a-z_]+)\s*\}\}")


def render_note_html(source: str) -> str:
    """Markdown → HTML that is safe to insert into a page unescaped."""
    converter = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists", "nl2br"])
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    html = converter.convert(source)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def mentioned_usernames(source: str) -> list[str]:
    """The usernames @mentioned in `source`, in order of first mention, without repeats."""
    return list(dict.fromkeys(MENTION.findall(source)))


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """Replace `{{name}}` placeholders whose name is in `values`; leave every other one as written.

    A plain substitution, not a template engine: template bodies are written by tenant staff, and
    nothing in them can reach code, attributes or other data.
    """
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), text)

"""Small display filters of the agent desktop (no queries)."""

from django import template
from django.utils.html import escape, format_html_join
from django.utils.safestring import mark_safe

from conversations.files import OUTBOUND_FILE_RULES
from desktop.selectors import CHANNEL_SYMBOLS

register = template.Library()

DELIVERY_TICKS = {
    "queued": "◷",
    "sent": "✓",
    "delivered": "✓✓",
    "read": "✓✓",
    "failed": "⚠",
    "undelivered": "⚠",
}
SPAN_LABELS = {"Card number": "a card number", "US SSN": "a social security number"}


@register.filter
def channel_symbol(channel: str) -> str:
    return CHANNEL_SYMBOLS.get(channel, "•")


@register.filter
def delivery_ticks(status: str) -> str:
    return DELIVERY_TICKS.get(status, "")


@register.filter
def todo_only(tasks) -> list:
    return [task for task in tasks if task.kind != "conversation"]


@register.filter
def split_words(text: str) -> list[str]:
    return text.split()


@register.filter
def accepted_types(channel: str) -> str:
    rule = OUTBOUND_FILE_RULES.get(channel)
    return ",".join(sorted(rule.types)) if rule else ""


@register.filter
def file_rule(channel: str) -> str:
    rule = OUTBOUND_FILE_RULES.get(channel)
    return f"Takes {rule.described}." if rule else "This channel takes no files."


@register.filter
def span_kinds(spans) -> str:
    kinds = []
    for span in spans:
        label = SPAN_LABELS.get(span.label, span.label)
        if label not in kinds:
            kinds.append(label)
    return " and ".join(kinds)


@register.filter
def highlight_spans(text: str, spans) -> str:
    """`text` escaped, with each sensitive span wrapped in <mark>."""
    pieces, cursor = [], 0
    for span in sorted(spans):
        pieces.append(escape(text[cursor : span.start]))
        pieces.append(format_html_join("", "<mark>{}</mark>", [(text[span.start : span.end],)]))
        cursor = span.end
    pieces.append(escape(text[cursor:]))
    return mark_safe("".join(pieces))

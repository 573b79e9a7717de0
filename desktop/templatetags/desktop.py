"""Small display filters of the agent desktop (no queries).

Several stand in for Django's own (`date:'c'`, `time:'H:i'`, `timesince`, `truncatechars`,
`get_FOO_display`, `{% url %}`) in the rows the desktop repeats, 50 task lines and a pane's messages,
where those were a third of the workspace's rendering time. They give the same text, except the
clocks, which read as desktop.js ticks them.
"""

from functools import cache
from urllib.parse import quote

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import escape, format_html_join
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

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
URL_SAFE = RFC3986_SUBDELIMS + "/~:@"  # what reverse() leaves unquoted in an argument
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


@register.filter(is_safe=True)
def clip(text: str, length: int) -> str:
    """`text|truncatechars:length`, taking a shortcut for ASCII text (no combining marks to skip)."""
    text = str(text)
    if not text.isascii():
        return Truncator(text).chars(length)
    return text if len(text) <= length else text[: length - 1] + "…"


@register.filter(expects_localtime=True)
def iso(value) -> str:
    """`value|date:'c'` (the `datetime` of a <time>)."""
    return value.isoformat() if value else ""


@register.filter(expects_localtime=True)
def hhmm(value) -> str:
    """`value|time:'H:i'`."""
    return f"{value.hour:02d}:{value.minute:02d}" if value else ""


def _clock(seconds: float) -> str:
    """desktop.js's format(): "1h 5m" from an hour on, else "4:07"."""
    seconds = max(0, round(seconds))
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    return f"{hours}h {minutes}m" if hours else f"{minutes}:{seconds % 60:02d}"


@register.filter
def clock_since(value) -> str:
    """Time elapsed since `value`, as desktop.js shows a `<time data-elapsed>` once it ticks."""
    return _clock((timezone.now() - value).total_seconds()) if value else ""


@register.filter
def clock_until(value) -> str:
    """Time left until `value`, as desktop.js shows a `<time data-countdown>` ("now" once it is past)."""
    if not value:
        return ""
    left = (value - timezone.now()).total_seconds()
    return _clock(left) if left > 0 else "now"


@cache
def _labels(model, field_name: str) -> dict:
    return dict(model._meta.get_field(field_name).flatchoices)


@register.filter
def label(instance, field_name: str) -> str:
    """`instance.get_<field_name>_display()`, without rebuilding the field's choices on every call."""
    value = getattr(instance, field_name)
    return str(_labels(type(instance), field_name).get(value, value))


URL_ID = "--public-id--"


@cache
def _url_pattern(name: str, script_prefix: str) -> str:
    return reverse(name, args=[URL_ID])


@register.filter
def url_of(public_id: str, name: str) -> str:
    """`{% url name public_id %}` for a route taking one public id, reversed once per process."""
    return _url_pattern(name, get_script_prefix()).replace(URL_ID, quote(str(public_id), safe=URL_SAFE))

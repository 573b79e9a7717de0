"""How the wallboard and reports write durations and percentages."""

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """45s, 3m 05s, 1h 05m, 2d 03h; a dash when there is nothing to show."""
    if seconds is None:
        return "—"
    seconds = round(float(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


@register.filter
def percent(value) -> str:
    """A whole percentage (85%); a dash when there is nothing to show."""
    return "—" if value is None else f"{float(value):.0f}%"


@register.filter
def decimal(value) -> str:
    """One decimal (4.5); a dash when there is nothing to show."""
    return "—" if value is None else f"{float(value):.1f}"

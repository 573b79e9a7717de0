"""SLA deadlines, computed up front from business hours, so timers read columns, not calendars.

Pure functions over plain data: a queue's business hours are a dict of weekday ("0" = Monday …
"6" = Sunday) to a list of ["HH:MM", "HH:MM"] spans in the tenant's time zone ("24:00" ends a
day); an empty dict means always open. An optional "holidays" entry lists dates ("2026-12-25")
on which the queue is closed all day. A first-response target of four business hours asked at
17:00 on a Friday with 9–18 hours is due at 12:00 on Monday.
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOLIDAYS = "holidays"
# How far ahead we look for open hours before deciding the calendar can never satisfy a target.
LOOKAHEAD_DAYS = 400


class InvalidBusinessHours(ValueError):
    pass


def parse_business_hours(business_hours: dict) -> dict[int, list[tuple[time, time | None]]]:
    """Validated spans per weekday; an end of None means midnight at the end of the day."""
    spans: dict[int, list[tuple[time, time | None]]] = {}
    for key, day_spans in business_hours.items():
        if key == HOLIDAYS:
            continue
        if key not in {str(day) for day in range(7)}:
            raise InvalidBusinessHours(f"weekday {key!r} must be 0 (Monday) to 6 (Sunday)")
        parsed = []
        for span in day_spans:
            if not isinstance(span, list | tuple) or len(span) != 2:
                raise InvalidBusinessHours(f"weekday {key}: each span is a pair like ['09:00', '17:30']")
            start, end = _parse_clock(span[0]), _parse_clock(span[1])
            if start is None or (end is not None and end <= start):
                raise InvalidBusinessHours(f"weekday {key}: span {span[0]}–{span[1]} does not go forward")
            parsed.append((start, end))
        parsed.sort(key=lambda pair: pair[0])
        for (_, previous_end), (next_start, _) in zip(parsed, parsed[1:], strict=False):
            if previous_end is None or previous_end > next_start:
                raise InvalidBusinessHours(f"weekday {key}: spans overlap")
        spans[int(key)] = parsed
    if spans and not any(spans.values()):
        raise InvalidBusinessHours("business hours name no open time at all; leave them empty for always open")
    parse_holidays(business_hours)
    return spans


def parse_holidays(business_hours: dict) -> frozenset[date]:
    """The dates the queue is closed all day (the "holidays" entry, ISO dates)."""
    listed = business_hours.get(HOLIDAYS, [])
    if not isinstance(listed, list):
        raise InvalidBusinessHours('holidays are a list of dates like ["2026-12-25"]')
    try:
        return frozenset(date.fromisoformat(str(day)) for day in listed)
    except ValueError:
        raise InvalidBusinessHours('each holiday is a date like "2026-12-25"') from None


def _parse_clock(text: str) -> time | None:
    """'HH:MM' as a time; '24:00' as None (the end of the day)."""
    if text == "24:00":
        return None
    try:
        hours, minutes = (int(part) for part in str(text).split(":"))
        return time(hours, minutes)
    except ValueError:
        raise InvalidBusinessHours(f"{text!r} is not a time like 09:00") from None


def business_time_add(*, start: datetime, seconds: float, business_hours: dict, time_zone: str) -> datetime:
    """The moment `seconds` of open time have passed after `start` (UTC in, UTC out)."""
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    spans, holidays = parse_business_hours(business_hours), parse_holidays(business_hours)
    if not spans and not holidays:
        return start + timedelta(seconds=seconds)
    if not spans:  # open around the clock but on holidays
        spans = {weekday: [(time(0), None)] for weekday in range(7)}
    zone = ZoneInfo(time_zone)
    cursor = start.astimezone(zone)
    remaining = timedelta(seconds=seconds)
    day: date = cursor.date()
    for _ in range(LOOKAHEAD_DAYS):
        for span_start, span_end in [] if day in holidays else spans.get(day.weekday(), []):
            opens = datetime.combine(day, span_start, tzinfo=zone)
            closes = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone) if span_end is None else (
                datetime.combine(day, span_end, tzinfo=zone)
            )
            begin = max(opens, cursor)
            if closes <= begin:
                continue
            # Compare in UTC: across a daylight-saving change, wall-clock arithmetic would be off.
            available = closes.astimezone(UTC) - begin.astimezone(UTC)
            if remaining <= available:
                return begin.astimezone(UTC) + remaining
            remaining -= available
        day += timedelta(days=1)
    raise InvalidBusinessHours(f"no deadline within {LOOKAHEAD_DAYS} days of {start.isoformat()}")


def first_response_deadlines(
    *, start: datetime, target_seconds: int, warning_seconds: int, business_hours: dict, time_zone: str
) -> tuple[datetime, datetime]:
    """(due_at, warn_at) for a first response asked at `start`.

    The warning comes `warning_seconds` of open time before the deadline (at `start` itself when the
    target is shorter than the warning period).
    """
    due_at = business_time_add(start=start, seconds=target_seconds, business_hours=business_hours, time_zone=time_zone)
    warn_at = business_time_add(
        start=start, seconds=max(target_seconds - warning_seconds, 0), business_hours=business_hours, time_zone=time_zone
    )
    return due_at, warn_at

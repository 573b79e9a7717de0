"""SLA deadlines counted in business time (pure functions, no database)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.sla import InvalidBusinessHours, business_time_add, first_response_deadlines

PARIS = "Europe/Paris"
WEEKDAYS_9_TO_18 = {str(day): [["09:00", "18:00"]] for day in range(5)}
SPLIT_DAY = {str(day): [["09:00", "12:00"], ["14:00", "18:00"]] for day in range(5)}


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(PARIS))


@pytest.mark.parametrize(
    "start, hours, hours_of_business, expected",
    [
        (paris(2026, 11, 16, 10, 0), 4, WEEKDAYS_9_TO_18, paris(2026, 11, 16, 14, 0)),  # inside one day
        (paris(2026, 11, 20, 17, 0), 4, WEEKDAYS_9_TO_18, paris(2026, 11, 23, 12, 0)),  # Friday → Monday
        (paris(2026, 11, 21, 11, 0), 1, WEEKDAYS_9_TO_18, paris(2026, 11, 23, 10, 0)),  # asked on Saturday
        (paris(2026, 11, 16, 7, 30), 1, WEEKDAYS_9_TO_18, paris(2026, 11, 16, 10, 0)),  # before opening
        (paris(2026, 11, 16, 11, 0), 2, SPLIT_DAY, paris(2026, 11, 16, 15, 0)),  # skips the lunch break
        (paris(2026, 11, 16, 18, 0), 9, WEEKDAYS_9_TO_18, paris(2026, 11, 17, 18, 0)),  # exactly one day
        (paris(2026, 11, 21, 23, 0), 48, {}, paris(2026, 11, 23, 23, 0)),  # always open
        (paris(2026, 11, 16, 23, 0), 2, {"0": [["22:00", "24:00"]], "1": [["00:00", "02:00"]]}, paris(2026, 11, 17, 1, 0)),
        (paris(2026, 12, 24, 17, 0), 4, {**WEEKDAYS_9_TO_18, "holidays": ["2026-12-25"]}, paris(2026, 12, 28, 12, 0)),
        (paris(2026, 12, 24, 23, 0), 2, {"holidays": ["2026-12-25"]}, paris(2026, 12, 26, 1, 0)),
    ],
    ids=["same-day", "over-the-weekend", "asked-while-closed", "before-opening", "lunch-break", "full-day",
         "always-open", "through-midnight", "over-a-holiday", "always-open-but-a-holiday"],
)  # fmt: skip
def test_business_time_add(start, hours, hours_of_business, expected):
    result = business_time_add(start=start, seconds=hours * 3600, business_hours=hours_of_business, time_zone=PARIS)
    assert result == expected
    assert result.tzinfo is not None


def test_daylight_saving_change_is_counted_in_real_time():
    # 29 March 2026: Paris clocks jump from 02:00 to 03:00. Open all day Sunday; 3 real hours from
    # 01:00 local (00:00 UTC) end at 03:00 UTC, which is 05:00 local.
    result = business_time_add(start=paris(2026, 3, 29, 1, 0), seconds=3 * 3600, business_hours={"6": [["00:00", "24:00"]]}, time_zone=PARIS)
    assert result == datetime(2026, 3, 29, 3, 0, tzinfo=UTC)


def test_first_response_deadlines_warn_before_the_deadline_in_business_time():
    due, warn = first_response_deadlines(
        start=paris(2026, 11, 20, 17, 0), target_seconds=4 * 3600, warning_seconds=15 * 60,
        business_hours=WEEKDAYS_9_TO_18, time_zone=PARIS,
    )  # fmt: skip
    assert due == paris(2026, 11, 23, 12, 0)
    assert warn == paris(2026, 11, 23, 11, 45)


def test_a_target_shorter_than_the_warning_warns_at_once():
    start = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
    due, warn = first_response_deadlines(start=start, target_seconds=600, warning_seconds=900, business_hours={}, time_zone="UTC")
    assert (due, warn) == (start + timedelta(minutes=10), start)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"7": [["09:00", "17:00"]]}, "weekday '7'"),
        ({"0": [["17:00", "09:00"]]}, "does not go forward"),
        ({"0": [["09:00", "13:00"], ["12:00", "18:00"]]}, "overlap"),
        ({"0": [["9am", "5pm"]]}, "is not a time"),
        ({"0": []}, "no open time"),
        ({"holidays": ["25/12/2026"]}, "a date like"),
        ({"holidays": "2026-12-25"}, "a list of dates"),
    ],
)
def test_bad_business_hours_are_refused_with_a_reason(bad, message):
    with pytest.raises(InvalidBusinessHours, match=message):
        business_time_add(start=paris(2026, 11, 16, 9, 0), seconds=60, business_hours=bad, time_zone=PARIS)


@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    first=st.integers(min_value=0, max_value=200 * 3600),
    second=st.integers(min_value=0, max_value=200 * 3600),
)
def test_adding_business_time_in_two_steps_equals_one_step(start, first, second):
    hours = SPLIT_DAY
    once = business_time_add(start=start, seconds=first + second, business_hours=hours, time_zone=PARIS)
    step = business_time_add(start=start, seconds=first, business_hours=hours, time_zone=PARIS)
    twice = business_time_add(start=step, seconds=second, business_hours=hours, time_zone=PARIS)
    # Equal, except that a zero-length step taken at closing time may stop at that closing time.
    assert once == twice or (second == 0 and once <= twice)
    assert once >= start

"""The desktop's own display filters give what Django's filters and tags they stand in for give
(desktop/templatetags/desktop.py), and the clocks read as desktop.js ticks them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from desktop.templatetags.desktop import clock_since, clock_until, url_of
from tasks.models import Task

WHEN = [datetime(2030, 3, 4, 15, 7, 9, 123456, tzinfo=UTC), datetime(2030, 7, 1, 3, 59, tzinfo=UTC)]


def rendered(source: str, **context) -> str:
    return Template("{% load desktop %}" + source).render(Context(context))


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "UTC"])
def test_iso_and_hhmm_read_as_date_c_and_time_h_i_in_the_tenants_time_zone(when, zone):
    with timezone.override(zone):
        assert rendered("{{ t|iso }}", t=when) == rendered("{{ t|date:'c' }}", t=when)
        assert rendered("{{ t|hhmm }}", t=when) == rendered("{{ t|time:'H:i' }}", t=when)
    assert rendered("{{ t|iso }}{{ t|hhmm }}", t=None) == ""


def test_clocks_read_as_desktop_js_shows_them():
    now = timezone.now()
    assert clock_since(now - timedelta(seconds=65)) == "1:05"
    assert clock_since(now - timedelta(hours=2, minutes=5, seconds=1)) == "2h 5m"
    assert clock_until(now + timedelta(seconds=30.4)) in ("0:30", "0:29")
    assert clock_until(now - timedelta(seconds=1)) == "now"
    assert clock_since(None) == clock_until(None) == ""


def test_label_is_the_fields_display_value():
    task = Task(channel="whatsapp", priority="critical")
    assert rendered('{{ t|label:"channel" }} {{ t|label:"priority" }}', t=task) == "WhatsApp Critical"
    assert rendered('{{ t|label:"channel" }}', t=Task(channel="")) == task.__class__(channel="").get_channel_display()


def test_url_of_is_the_reversed_url():
    assert url_of("Ab-_9x", "desktop:conversation") == reverse("desktop:conversation", args=["Ab-_9x"])
    assert url_of("a b", "desktop:task-claim") == reverse("desktop:task-claim", args=["a b"])

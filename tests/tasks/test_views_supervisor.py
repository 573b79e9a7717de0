"""The wallboard, the reports and their CSV export, and an agent's own figures: who may see them,
what they show, that nothing of another tenant appears, and the wallboard's fixed query count."""

import csv
import io

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contactcenter.tenancy import tenant_context
from tasks.models import AgentState, AgentStatus, Offer, Queue
from tasks.services import agent_state_for
from tests.conftest import make_member, signed_in_client
from tests.conversations.conftest import make_conversation, make_queue, make_task
from tests.tasks.floor_day import DAY

SUPERVISOR_PAGES = ("wallboard", "wallboard-board", "reports")
REPORT = {"start": DAY.isoformat(), "end": DAY.isoformat()}


def export(client, table: str, **params) -> list[list[str]]:
    response = client.get(reverse("reports-export", args=[table]), {**REPORT, **params})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"switchboard-{table}-" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.fixture
def globex_floor(globex, globex_agent):
    """A busy globex floor, with names that must never show on acme's pages."""
    with tenant_context(globex):
        queue = Queue.objects.create(tenant=globex, name="Globex Secret Queue")
        task = make_task(make_conversation(), queue)
        make_task(make_conversation(), queue)
        state = agent_state_for(globex_agent)
        state.served_queues.add(queue)
        Offer.objects.create(tenant=globex, task=task, agent=globex_agent, expires_at=task.created_at)
        return queue


@pytest.mark.parametrize("name", SUPERVISOR_PAGES)
def test_agents_are_refused_and_strangers_sent_to_sign_in(name, acme_agent):
    assert signed_in_client(acme_agent).get(reverse(name)).status_code == 403
    response = Client().get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_agents_cannot_export(acme_agent):
    assert signed_in_client(acme_agent).get(reverse("reports-export", args=["agents"]), REPORT).status_code == 403


@pytest.mark.parametrize("name", SUPERVISOR_PAGES)
def test_supervisors_and_admins_see_them(name, acme_supervisor, acme_admin):
    for member in (acme_supervisor, acme_admin):
        assert signed_in_client(member).get(reverse(name)).status_code == 200


def test_the_wallboard_refreshes_its_live_panel(floor_day, acme_supervisor):
    page = signed_in_client(acme_supervisor).get(reverse("wallboard")).content.decode()
    board_url = reverse("wallboard-board")
    assert (
        f'id="wallboard" class="wallboard" hx-get="{board_url}" hx-trigger="every 2s, floor-changed" hx-swap="outerHTML"'
        in page
    )
    assert 'href="/supervisor/"' in page and 'href="/supervisor/reports/"' in page  # the nav links
    fragment = signed_in_client(acme_supervisor).get(board_url)
    assert fragment["Cache-Control"].startswith("max-age=0")
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="wallboard"') and "<html" not in html
    # Live figures (what waits now): T7 in Support (offered to B), T10 in Billing.
    assert 'data-figure="total-waiting">2<' in html
    assert html.count('data-figure="waiting">1<') == 2 and 'data-figure="offers-pending">1<' in html
    assert "Lunch <strong>1</strong>" in html and "<svg" in html and "Agents needed" in html


def test_the_nav_offers_the_floor_to_supervisors_only(acme_agent, acme_supervisor):
    assert "Wallboard" not in signed_in_client(acme_agent).get(reverse("team")).content.decode()
    assert "Wallboard" in signed_in_client(acme_supervisor).get(reverse("team")).content.decode()


def test_the_board_reads_a_fixed_number_of_queries(in_acme, acme, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    client.get(reverse("wallboard-board"))  # warm the session

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("wallboard-board")).status_code == 200
        return len(captured)

    support = make_queue("Support")
    make_task(make_conversation(), support)
    small = queries()
    for n in range(4):
        queue = make_queue(f"Queue {n}")
        for _ in range(3):
            task = make_task(make_conversation(), queue)
        agent = make_member(acme, f"acme-extra{n}")
        state = agent_state_for(agent)
        state.served_queues.add(queue, support)
        AgentState.objects.filter(pk=state.pk).update(status=AgentStatus.AVAILABLE)
        Offer.objects.create(tenant=acme, task=task, agent=agent, expires_at=task.created_at)
    assert queries() == small
    # The signed-in user and their memberships (2; sessions live in the cache), then floor_board's nine.
    assert small == 11


def test_the_report_page_and_its_csv(floor_day, acme_supervisor, acme_agent):
    client = signed_in_client(acme_supervisor)
    html = client.get(reverse("reports"), REPORT).content.decode()
    assert "Conversations handled</dt><dd>4<" in html
    assert "3 of 7 answered" in html  # Support 3 of 6, Billing 0 of 1
    assert "Follow-up Required" in html and "24m 40s" not in html

    [header, *rows] = export(client, "agents")
    agents = {row[1]: dict(zip(header, row, strict=True)) for row in rows}
    a = agents["acme-agent1"]
    assert (a["handled"], a["avg_first_response_seconds"], a["avg_resolution_seconds"]) == ("3", "90.0", "900.0")
    assert (a["available_seconds"], a["offline_seconds"], a["unavailable_by_reason"]) == (
        "13200.0",
        "72000.0",
        "Lunch: 1200",
    )
    assert (a["occupancy_percent"], a["offers_declined"], a["csat_average"]) == ("24.7", "1", "5.0")
    [header, *queues] = export(client, "queues")
    assert dict(zip(header, queues[1], strict=True))["service_level_percent"] == "50.0"
    assert export(client, "dispositions")[1:] == [["Support", "Follow-up Required", "1"], ["Support", "Resolved", "3"]]
    daily = export(client, "daily", agent=acme_agent.public_id)
    assert daily == [["date", "agent", "username", "handled"], [DAY.isoformat(), "Agent1", "acme-agent1", "3"]]


def test_a_supervisor_sees_nothing_of_another_tenant(floor_day, globex_floor, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    pages = [
        client.get(reverse("wallboard")).content.decode(),
        client.get(reverse("wallboard-board")).content.decode(),
        client.get(reverse("reports"), REPORT).content.decode(),
        *(client.get(reverse("reports-export", args=[table]), REPORT).content.decode()
          for table in ("agents", "queues", "dispositions", "daily")),
    ]  # fmt: skip
    for page in pages:
        assert "Globex" not in page and "globex" not in page
    assert "Support" in pages[1] and "acme-agent1" in pages[3]
    # Globex's queue, by its public id, is no valid choice here: the form refuses it, the export too.
    refused = client.get(reverse("reports"), {**REPORT, "queue": globex_floor.public_id})
    assert (
        "Select a valid choice" in refused.content.decode() and "Conversations handled" not in refused.content.decode()
    )
    assert (
        client.get(reverse("reports-export", args=["agents"]), {**REPORT, "queue": globex_floor.public_id}).status_code
        == 400
    )


def test_globex_sees_its_own_floor(globex_floor, globex_supervisor, floor_day):
    html = signed_in_client(globex_supervisor).get(reverse("wallboard-board")).content.decode()
    assert "Globex Secret Queue" in html and "Support" not in html and "Billing" not in html
    assert 'data-figure="waiting">2<' in html and 'data-figure="offers-pending">1<' in html


def test_a_bad_period_is_explained(acme_supervisor):
    client = signed_in_client(acme_supervisor)
    html = client.get(reverse("reports"), {"start": "2026-03-10", "end": "2026-03-01"}).content.decode()
    assert "The period ends before it starts." in html
    response = client.get(reverse("reports-export", args=["agents"]), {"start": "2025-01-01", "end": "2026-03-01"})
    assert response.status_code == 400 and "366 days" in response.content.decode()
    assert client.get(reverse("reports-export", args=["secrets"]), REPORT).status_code == 404


def test_spreadsheet_formulas_in_names_arrive_as_text(in_acme, acme, acme_supervisor):
    sneaky = make_member(acme, "acme-sneaky")
    sneaky.user.first_name = '=HYPERLINK("http://evil.example","x")'
    sneaky.user.save()
    rows = export(signed_in_client(acme_supervisor), "agents")
    assert ['\'=HYPERLINK("http://evil.example","x")', "acme-sneaky"] == next(
        row[:2] for row in rows if row[1] == "acme-sneaky"
    )


def test_an_agent_sees_their_own_figures(floor_day, acme_agent):
    response = signed_in_client(acme_agent).get(reverse("my-metrics"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="my-metrics"')
    assert 'data-figure="handled">0<' in html  # the fixed day was long ago: nothing handled today
    assert Client().get(reverse("my-metrics")).status_code == 302


def test_durations_and_percentages_read_naturally():
    from tasks.templatetags.floor import decimal, duration, percent

    assert [duration(v) for v in (None, 0, 59.4, 60, 3599, 3600, 47 * 3600 + 60, 49 * 3600)] == [
        "—", "0s", "59s", "1m 00s", "59m 59s", "1h 00m", "47h 01m", "2d 01h",
    ]  # fmt: skip
    assert (percent(None), percent(24.697), decimal(3.456), decimal(None)) == ("—", "25%", "3.5", "—")

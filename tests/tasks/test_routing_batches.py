"""A routing run writes its offers in a fixed number of statements and pushes, however many offers it
makes (bench/README.md, routing: one round trip per offer made a decision cost ~7 ms), and writes the
same rows and pushes as one offer at a time did."""

from collections import defaultdict

from django.db import connection
from django.test.utils import CaptureQueriesContext

from contactcenter import realtime
from conversations.models import Activity
from desktop import fragments
from tasks.models import Offer, TaskStatus
from tasks.services import routing_run
from tests.conversations.conftest import make_queue
from tests.tasks.routing_helpers import make_agent, offers_of, waiting_task


def _run_counting(tenant, queue, django_capture_on_commit_callbacks) -> tuple[list[Offer], int, int]:
    """Route `queue` alone; return the offers, the statements the run sent and its on-commit callbacks."""
    with django_capture_on_commit_callbacks() as callbacks, CaptureQueriesContext(connection) as statements:
        offers = routing_run(tenant_id=tenant.pk, queue_ids=[queue.pk])
    return offers, len(statements), len(callbacks)


def test_a_run_sends_as_many_statements_and_pushes_for_12_offers_as_for_2(in_acme, django_capture_on_commit_callbacks):
    small, large = make_queue("Small", channels=["sms"]), make_queue("Large", channels=["sms"])
    for i in range(2):
        make_agent(in_acme, f"acme-s{i}", [small], capacity={"sms": 1})
    for i in range(4):
        make_agent(in_acme, f"acme-l{i}", [large], capacity={"sms": 3})
    for _ in range(2):
        waiting_task(small)
    for _ in range(12):
        waiting_task(large)

    two, two_statements, two_callbacks = _run_counting(in_acme, small, django_capture_on_commit_callbacks)
    twelve, twelve_statements, twelve_callbacks = _run_counting(in_acme, large, django_capture_on_commit_callbacks)

    assert (len(two), len(twelve)) == (2, 12)
    assert twelve_statements == two_statements, (two_statements, twelve_statements)
    assert twelve_callbacks == two_callbacks, (two_callbacks, twelve_callbacks)


def test_a_run_writes_the_rows_and_pushes_one_offer_at_a_time_wrote(
    in_acme, django_capture_on_commit_callbacks, listen
):
    single = make_queue("Single", channels=["sms"])
    several = make_queue("Several", channels=["sms"], max_offers_per_task=2)
    first = make_agent(in_acme, "acme-first", [several], capacity={"sms": 3})
    already = waiting_task(several)
    assert len(routing_run(tenant_id=in_acme.pk, queue_ids=[several.pk])) == 1  # reserved, room for one more offer
    members = [first, *(make_agent(in_acme, f"acme-a{i}", [single, several], capacity={"sms": 3}) for i in range(3))]
    tasks = [waiting_task(single) for _ in range(4)] + [waiting_task(several)]
    inboxes = {m.pk: listen(realtime.agent_group(in_acme.pk, m.pk)) for m in members}
    board = listen(realtime.supervisors_group(in_acme.pk))
    mark = Activity.objects.order_by("-pk").values_list("pk", flat=True).first()
    seen_pending = {t.pk for t in tasks}

    with django_capture_on_commit_callbacks(execute=True):
        offers = routing_run(tenant_id=in_acme.pk)

    assert {o.task_id for o in offers} == {already.pk, *seen_pending}
    names = {m.pk: m.display_name for m in members}
    expected_rows, expected_offers = defaultdict(list), defaultdict(set)
    for task in [already, *tasks]:
        made = [o for o in offers if o.task_id == task.pk]
        if task.pk in seen_pending:
            who = ", ".join(names[o.agent_id] for o in made)
            expected_rows[task.pk].append(("pending", "reserved", f"Offered to {who}."))
        for offer in made:
            offer = Offer.objects.get(pk=offer.pk)
            reason = f"Offered to {names[offer.agent_id]} until {offer.expires_at:%H:%M:%S} UTC. {offer.explanation}"
            expected_rows[task.pk].append(("", "offer pending", reason))
            expected_offers[offer.agent_id].add(
                (offer.public_id, task.public_id, "sms", offer.expires_at.isoformat(), offer.explanation)
            )
        assert len(offers_of(task)) == (2 if task.queue_id == several.pk else 1)
    written = defaultdict(list)
    for row in Activity.objects.filter(pk__gt=mark, kind="status").order_by("pk"):
        assert (row.actor_id, row.via, row.conversation_id) == (None, "system", row.task.conversation_id)
        written[row.task_id].append((row.old_value, row.new_value, row.reason))
    assert written == expected_rows

    pushed = defaultdict(set)
    for agent_id, inbox in inboxes.items():
        for message in inbox.receive_all():
            assert message["event"] == "offer.new"
            for o in message["data"]["offers"]:
                pushed[agent_id].add((o["offer"], o["task"], o["channel"], o["expires_at"], o["explanation"]))
    assert pushed == expected_offers
    statuses = [m for m in board.receive_all() if m["event"] in ("task.status", "tasks.status")]
    assert [(m["event"], sorted(m["data"]["tasks"]), m["data"]["status"]) for m in statuses] == [
        ("tasks.status", sorted(t.public_id for t in tasks), TaskStatus.RESERVED)
    ]


def test_pushes_to_several_members_are_numbered_in_each_log_and_replayed(
    acme, acme_agent, acme_agent2, globex_agent, django_capture_on_commit_callbacks, listen
):
    inboxes = {m.pk: listen(realtime.agent_group(acme.pk, m.pk)) for m in (acme_agent, acme_agent2)}
    outsider = listen(realtime.agent_group(globex_agent.tenant_id, globex_agent.pk))
    with django_capture_on_commit_callbacks(execute=True):
        realtime.push_to_member(acme.pk, acme_agent.pk, event="offer.new", data={"offers": []})
    before = {m.pk: realtime.member_event_start(acme.pk, m.pk) for m in (acme_agent, acme_agent2)}  # agent2: n 0

    with django_capture_on_commit_callbacks(execute=True):
        realtime.push_to_members(
            acme.pk, {acme_agent.pk: {"offers": [{"offer": "o1"}]}, acme_agent2.pk: {"offers": [{"offer": "o2"}]}},
            event="offer.new",
        )  # fmt: skip

    for member, offer in ((acme_agent, "o1"), (acme_agent2, "o2")):
        received = [m for m in inboxes[member.pk].receive_all() if m["data"]["offers"]]
        assert [(m["event"], m["data"]["offers"]) for m in received] == [("offer.new", [{"offer": offer}])]
        assert received[0]["seq"] == realtime.member_event_position(acme.pk, member.pk) != before[member.pk]
        replayed = realtime.member_events_after(acme.pk, member.pk, before[member.pk])
        assert [(e["event"], e["data"], e["seq"]) for e in replayed] == [
            ("offer.new", {"offers": [{"offer": offer}]}, received[0]["seq"])
        ]
    assert outsider.receive_all() == []


def test_the_agents_one_offer_push_redraws_every_offer_it_names(in_acme, django_capture_on_commit_callbacks, listen):
    queue = make_queue("Sales", channels=["sms"])
    agent = make_agent(in_acme, "acme-ann", [queue], capacity={"sms": 3})
    for _ in range(3):
        waiting_task(queue)
    inbox = listen(realtime.agent_group(in_acme.pk, agent.pk))

    with django_capture_on_commit_callbacks(execute=True):
        offers = routing_run(tenant_id=in_acme.pk)

    [push] = [m for m in inbox.receive_all() if m["event"] == "offer.new"]
    assert sorted(o["offer"] for o in push["data"]["offers"]) == sorted(o.public_id for o in offers)
    html = fragments.for_event(agent, push["event"], push["data"])
    assert 'data-offer-count="3"' in html
    assert all(f'id="offer-{o.public_id}"' in html for o in offers)

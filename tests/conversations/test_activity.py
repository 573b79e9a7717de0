"""The activity log is append-only: no code path updates or deletes it, and the database refuses to."""

import ast
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from contactcenter.tenancy import tenant_context
from conversations import activity
from conversations.models import Activity, Conversation
from conversations.services import conversation_transition
from tasks.models import Task

ROOT = Path(__file__).resolve().parents[2]
WRITES = {"update", "delete", "save", "bulk_update", "update_or_create", "get_or_create", "raw"}


def activity_writes_in(source: str, where: str) -> list[str]:
    """Calls like `Activity.objects.filter(...).update(...)` or `row.activities.all().delete()`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
            receiver = ast.get_source_segment(source, node.func.value) or ""
            if "activit" in receiver.lower():
                found.append(f"{where}:{node.lineno}: {receiver}.{node.func.attr}(…)")
    return found


def test_no_application_code_updates_or_deletes_activity_rows():
    apps = ("conversations", "tasks", "channels_inbound", "contactcenter")
    modules = [path for app in apps for path in (ROOT / app).rglob("*.py")]
    assert len(modules) > 20
    hits = [
        hit
        for path in modules
        if "migrations" not in path.parts
        for hit in activity_writes_in(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert hits == []
    # The one writer offers only appending (one row, or many built by activity_new for bulk services).
    public = [name for name in vars(activity) if callable(getattr(activity, name)) and not name[0].isupper()]
    assert sorted(n for n in public if getattr(getattr(activity, n), "__module__", "") == activity.__name__) == [
        "activity_new",
        "activity_record",
        "activity_record_many",
        "via_of",
    ]


def test_the_scan_would_catch_an_update_or_a_delete():
    offender = (
        "def undo(row, task):\n"
        "    Activity.objects.filter(pk=row.pk).update(reason='')\n"
        "    task.activities.all().delete()\n"
    )
    assert activity_writes_in(offender, "probe.py") == [
        "probe.py:2: Activity.objects.filter(pk=row.pk).update(…)",
        "probe.py:3: task.activities.all().delete(…)",
    ]


@pytest.fixture
def logged(in_acme, acme_agent):
    from tests.conversations.conftest import make_conversation

    conversation = make_conversation(status="open")
    conversation_transition(conversation=conversation, to_status="resolved", actor=acme_agent, reason="done")
    return Activity.objects.filter(conversation=conversation).latest("pk")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda row: Activity.objects.filter(pk=row.pk).update(reason="nothing happened"),
        lambda row: Activity.objects.filter(pk=row.pk).delete(),
        lambda row: (setattr(row, "new_value", "open"), row.save()),
        lambda row: row.delete(),
        lambda row: connection.cursor().execute("DELETE FROM conversations_activity"),
    ],
    ids=["queryset update", "queryset delete", "save", "instance delete", "raw sql"],
)
def test_the_database_refuses_to_change_or_remove_a_row(logged, tamper):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            tamper(logged)
    stored = Activity.objects.get(pk=logged.pk)
    assert (stored.kind, stored.new_value, stored.reason) == ("status", "resolved", "done")


def test_erasing_a_whole_tenant_is_possible_only_when_said_explicitly(logged, acme, globex_agent):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            acme.delete()
    assert Activity.objects.filter(pk=logged.pk).exists()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL switchboard.erasing_tenant = 'on'")
        acme.delete()
    assert not Activity.objects.filter(pk=logged.pk).exists()
    assert not Conversation.objects.exists() and not Task.objects.exists()
    with tenant_context(globex_agent.tenant_id):  # the other tenant is untouched
        assert globex_agent.__class__.objects.filter(pk=globex_agent.pk).exists()

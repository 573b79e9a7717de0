"""Races on real PostgreSQL: two threads, two connections, released together by a barrier."""

import pytest

from contactcenter.tenancy import tenant_context
from conversations.models import Contact, ContactIdentity, Message
from conversations.services import contact_find_or_create, message_append_inbound
from tests.conversations.conftest import make_conversation, race

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_inbound_provider_id_appended_concurrently_yields_one_message(acme):
    with tenant_context(acme):
        conversation = make_conversation()

    def append():
        with tenant_context(acme.pk):
            return message_append_inbound(conversation=conversation, body="hi 👋", provider_message_id="SMrace")

    for _ in range(3):  # a few rounds, so the insert race is really exercised
        results = race(append, append)
        assert not [r for r in results if isinstance(r, Exception)], results
        (first, created_first), (second, created_second) = results
        assert first.pk == second.pk
    with tenant_context(acme):
        assert Message.objects.filter(provider_message_id="SMrace").count() == 1
        assert sorted([created_first, created_second]) == [False, False]  # later rounds find it


def test_first_round_has_exactly_one_creator(acme):
    with tenant_context(acme):
        conversation = make_conversation()

    def append():
        with tenant_context(acme.pk):
            return message_append_inbound(conversation=conversation, body="hi", provider_message_id="SMonce")[1]

    assert sorted(race(append, append)) == [False, True]
    with tenant_context(acme):
        assert Message.objects.filter(conversation=conversation).count() == 1


def test_the_same_new_customer_writing_twice_at_once_is_one_contact(acme):
    def find():
        with tenant_context(acme.pk):
            return contact_find_or_create(kind="whatsapp", value="whatsapp:+15550109999", name="Racer")

    results = race(find, find)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert results[0][0].pk == results[1][0].pk
    assert sorted(created for _, created in results) == [False, True]
    with tenant_context(acme):
        assert Contact.objects.count() == 1 and ContactIdentity.objects.count() == 1

"""A rule a service enforces reaches the person as HTTP 409 with its message."""

from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from contactcenter.errors import DomainErrorMiddleware, TransitionNotAllowed
from conversations.services import conversation_transition
from tests.conversations.conftest import make_conversation


def refused_transition(in_acme):
    conversation = make_conversation(status="archived")
    try:
        conversation_transition(conversation=conversation, to_status="open")
    except TransitionNotAllowed as error:
        return error
    raise AssertionError("the transition should have been refused")


def test_a_refused_transition_becomes_a_409_page_with_its_message(in_acme):
    error = refused_transition(in_acme)
    request = RequestFactory().post("/conversations/x/open")
    request.user = AnonymousUser()
    response = DomainErrorMiddleware(lambda r: None).process_exception(request, error)
    assert response.status_code == 409
    assert "This conversation is archived and cannot become open." in response.content.decode()


def test_an_htmx_request_gets_the_error_fragment(in_acme):
    error = refused_transition(in_acme)
    request = RequestFactory().post("/conversations/x/open", headers={"HX-Request": "true"})
    request.user = AnonymousUser()
    request.htmx = True
    response = DomainErrorMiddleware(lambda r: None).process_exception(request, error)
    body = response.content.decode()
    assert response.status_code == 409 and 'id="domain-error"' in body and "archived" in body
    assert "<html" not in body

"""Sign-in throttling: a few wrong passwords per user and address, then 429 until the window ends."""

import pytest
from django.test import Client
from django.urls import reverse

from contactcenter.signin import SIGNIN_FAILURE_LIMIT, signin_failures_clear, signin_retry_after
from tests.conftest import PASSWORD

ADDRESS, OTHER_ADDRESS = "198.51.100.7", "198.51.100.8"


@pytest.fixture(autouse=True)
def counts_cleared():
    def clear():
        for username in ("acme-agent1", "acme-agent2"):
            for address in (ADDRESS, OTHER_ADDRESS):
                signin_failures_clear(username=username, address=address)

    clear()
    yield
    clear()


def sign_in(username, password, address=ADDRESS):
    client = Client(REMOTE_ADDR=address)
    return client, client.post(reverse("login"), {"username": username, "password": password})


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_after_the_limit_even_the_right_password_is_refused_with_429(acme_agent):
    for attempt in range(SIGNIN_FAILURE_LIMIT):
        _, response = sign_in("acme-agent1", f"guess-{attempt}")
        assert response.status_code == 200, attempt
        assert "Please enter a correct username and password" in response.content.decode()
    client, response = sign_in("acme-agent1", PASSWORD)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    assert "Too many failed sign-ins" in response.content.decode()
    assert not signed_in(client)


def test_the_lock_is_per_user_and_address(acme_agent, acme_agent2):
    for attempt in range(SIGNIN_FAILURE_LIMIT):
        sign_in("acme-agent1", f"guess-{attempt}")
    assert signin_retry_after(username="ACME-agent1", address=ADDRESS) is not None  # names compare without case
    client, response = sign_in("acme-agent1", PASSWORD, address=OTHER_ADDRESS)  # the real user, elsewhere
    assert response.status_code == 302 and signed_in(client)
    client, response = sign_in("acme-agent2", PASSWORD)  # a colleague behind the same address
    assert response.status_code == 302 and signed_in(client)


def test_a_successful_sign_in_clears_the_count(acme_agent):
    for attempt in range(SIGNIN_FAILURE_LIMIT - 1):
        sign_in("acme-agent1", f"guess-{attempt}")
    client, response = sign_in("acme-agent1", PASSWORD)
    assert response.status_code == 302 and signed_in(client)
    for attempt in range(SIGNIN_FAILURE_LIMIT - 1):
        sign_in("acme-agent1", f"guess-again-{attempt}")
    client, response = sign_in("acme-agent1", PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_unknown_users_are_throttled_the_same_way(db):
    for attempt in range(SIGNIN_FAILURE_LIMIT):
        sign_in("acme-agent2", f"guess-{attempt}")  # no such user in this test
    assert sign_in("acme-agent2", "anything")[1].status_code == 429

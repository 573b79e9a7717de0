def test_signed_in_agent_sees_their_tenant_on_home(acme_agent):
    from tests.conftest import signed_in_client

    response = signed_in_client(acme_agent).get("/")
    assert response.status_code == 200
    assert "Acme Support" in response.content.decode()

"""Attachments are served only inside their tenant (or by a signed, expiring link), never as a page
of ours; admins can refuse kinds of files on top of each channel's rules."""

import time
from types import SimpleNamespace

import pytest
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from contactcenter.models import Role
from contactcenter.tenancy import tenant_context
from conversations.files import AttachmentNotAllowed, content_type_matches, outbound_file_check
from conversations.models import AttachmentRestriction, Message
from conversations.selectors import (
    ATTACHMENT_PUBLIC_MAX_AGE,
    ATTACHMENT_PUBLIC_SALT,
    attachment_public_url,
    attachment_url,
)
from conversations.services import attachment_add, message_send_reply
from tests.conftest import make_member, signed_in_client
from tests.conversations.conftest import make_conversation, snapshot

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.7\n" + b"x" * 32
GIF = b"GIF89a" + b"\x00" * 32
HTML = b"<html><script>alert(document.cookie)</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'


def stored(world, filename: str, content: bytes, content_type: str):
    message = Message.objects.filter(conversation=world.live).first()
    return attachment_add(message=message, filename=filename, content=content, content_type=content_type)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


# --- the member URL ---------------------------------------------------------------------------


def test_a_member_sees_a_picture_inline_with_its_sniffed_type(world):
    attachment = stored(world, "photo.png", PNG, "image/png")
    url = attachment_url(attachment)
    assert url == f"/attachments/{attachment.public_id}/" == reverse("attachment-download", args=[attachment.public_id])

    response = signed_in_client(world.agent2).get(url)
    assert response.status_code == 200
    assert body_of(response) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="photo.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    "filename, content, content_type",
    [
        ("invoice.pdf", PDF, "application/pdf"),
        ("logo.svg", SVG, "image/svg+xml"),  # a picture that can run script
        ("page.html", HTML, "text/html"),  # e.g. a provider's claim stored as it came
        ("fake.png", HTML, "image/png"),  # a stored type the bytes do not bear out
        ("setup.exe", b"MZ\x90\x00", "application/octet-stream"),
    ],
    ids=["pdf", "svg", "html", "html-claiming-png", "executable"],
)
def test_anything_but_a_genuine_raster_image_is_downloaded_never_shown(world, filename, content, content_type):
    attachment = stored(world, filename, content, content_type)
    response = signed_in_client(world.agent).get(attachment_url(attachment))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert body_of(response) == content


def test_the_download_name_cannot_climb_directories_or_break_the_header(world):
    attachment = stored(world, '../../etc/"quoted"; name=.pdf', PDF, "application/pdf")
    disposition = signed_in_client(world.agent).get(attachment_url(attachment))["Content-Disposition"]
    assert disposition == 'attachment; filename="quoted_name.pdf"'

    accented = stored(world, "façture été.pdf", PDF, "application/pdf")
    disposition = signed_in_client(world.agent).get(attachment_url(accented))["Content-Disposition"]
    assert disposition == "attachment; filename*=utf-8''fa%C3%A7ture_%C3%A9t%C3%A9.pdf"


def test_it_checks_ownership(world, globex_agent):
    attachment = stored(world, "photo.png", PNG, "image/png")
    url = attachment_url(attachment)
    assert signed_in_client(globex_agent).get(url).status_code == 404
    assert signed_in_client(world.agent).get("/attachments/no-such-file/").status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert signed_in_client(world.agent).post(url).status_code == 405


def test_a_file_gone_from_storage_is_404_not_an_error(world):
    attachment = stored(world, "photo.png", PNG, "image/png")
    attachment.file.storage.delete(attachment.file.name)
    assert signed_in_client(world.agent).get(attachment_url(attachment)).status_code == 404


# --- the public, signed URL -------------------------------------------------------------------


class SignedLongAgo(signing.TimestampSigner):
    """Signs as if the clock read ATTACHMENT_PUBLIC_MAX_AGE and a minute ago."""

    def timestamp(self):
        return signing.b62_encode(int(time.time() - ATTACHMENT_PUBLIC_MAX_AGE.total_seconds() - 60))


def public_path(url: str) -> str:
    return url.removeprefix("https://support.example.com")


def test_a_signed_link_serves_the_file_to_anyone_holding_it(world, settings):
    settings.PUBLIC_BASE_URL = "https://support.example.com"
    attachment = stored(world, "photo.png", PNG, "image/png")
    url = attachment_public_url(attachment)
    assert url.startswith("https://support.example.com/attachments/public/")

    response = Client().get(public_path(url))  # no one signed in: a provider fetching the file
    assert response.status_code == 200
    assert (body_of(response), response["Content-Type"]) == (PNG, "image/png")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_tampered_expired_or_foreign_token_is_404(world, settings, globex):
    settings.PUBLIC_BASE_URL = "https://support.example.com"
    attachment = stored(world, "photo.png", PNG, "image/png")
    token = public_path(attachment_public_url(attachment)).split("/")[-2]
    with tenant_context(globex):
        globex_conversation = make_conversation(channel="sms")
        globex_message = Message.objects.create(
            tenant=globex, conversation=globex_conversation, direction="inbound", delivery_status="received"
        )
        globex_file = attachment_add(
            message=globex_message, filename="secret.pdf", content=PDF, content_type="application/pdf"
        )

    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    expired = SignedLongAgo(salt=ATTACHMENT_PUBLIC_SALT).sign_object(
        [world.tenant.pk, attachment.public_id], compress=True
    )
    other_use = signing.dumps([world.tenant.pk, attachment.public_id])  # signed, but not for this
    # Even a validly signed token finds a file only inside the tenant it names.
    wrong_tenant = signing.dumps([world.tenant.pk, globex_file.public_id], salt=ATTACHMENT_PUBLIC_SALT, compress=True)
    not_a_pair = signing.dumps("hello", salt=ATTACHMENT_PUBLIC_SALT)
    for name, bad in {"tampered": tampered, "expired": expired, "other use": other_use,
                      "wrong tenant": wrong_tenant, "not a pair": not_a_pair, "garbage": "abc"}.items():  # fmt: skip
        assert Client().get(reverse("attachment-public", args=[bad])).status_code == 404, name
    assert Client().get(reverse("attachment-public", args=[token])).status_code == 200


def test_a_public_link_needs_the_public_base_url(world, settings):
    settings.PUBLIC_BASE_URL = None
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        attachment_public_url(stored(world, "photo.png", PNG, "image/png"))


# --- admin-restricted kinds of files -----------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, content_type, matches",
    [
        ("video/*", "video/mp4", True),
        ("image/*", "image/png", True),
        ("image/*", "application/pdf", False),
        ("application/pdf", "application/pdf", True),
        ("Application/PDF", "application/pdf; name=x", True),
        ("image/gif", "image/png", False),
        ("image/*", "imagex/png", False),
    ],
)
def test_a_restriction_names_one_type_or_a_family(pattern, content_type, matches):
    assert content_type_matches(pattern, content_type) is matches


def test_outbound_file_check_refuses_a_restricted_type_with_the_admins_reason():
    restrictions = [SimpleNamespace(content_type="image/gif", reason="animated files distract customers")]
    assert (
        outbound_file_check(channel="sms", filename="photo.png", content=PNG, restrictions=restrictions) == "image/png"
    )
    with pytest.raises(AttachmentNotAllowed) as refused:
        outbound_file_check(channel="sms", filename="party.gif", content=GIF, restrictions=restrictions)
    assert str(refused.value) == "“party.gif” cannot be sent on sms: animated files distract customers"


def test_a_reply_with_a_restricted_file_writes_nothing_and_says_why(world, globex):
    AttachmentRestriction.objects.create(
        tenant=world.tenant, content_type="application/pdf", channel="whatsapp", reason="no documents on WhatsApp"
    )
    AttachmentRestriction.objects.create(tenant=world.tenant, content_type="image/*", reason="no pictures at all")
    with tenant_context(globex):  # another tenant's rules are not ours
        AttachmentRestriction.objects.create(tenant=globex, content_type="application/pdf", reason="globex rule")

    whatsapp = make_conversation(channel="whatsapp")
    before = snapshot()
    with pytest.raises(AttachmentNotAllowed, match="no pictures at all"):
        message_send_reply(conversation=world.live, author=world.agent, body="see", files=[("photo.png", PNG)])
    with pytest.raises(
        AttachmentNotAllowed, match="“invoice.pdf” cannot be sent on whatsapp: no documents on WhatsApp"
    ):
        message_send_reply(conversation=whatsapp, author=world.agent, body="see", files=[("invoice.pdf", PDF)])
    assert snapshot() == before

    email = make_conversation(channel="email")  # the PDF rule is WhatsApp's only; globex's does not apply
    message = message_send_reply(conversation=email, author=world.agent, body="", files=[("invoice.pdf", PDF)])
    assert [a.content_type for a in message.attachments.all()] == ["application/pdf"]


def restriction_form(**fields) -> dict:
    return {"content_type": "", "channel": "", "reason": "", **fields}


def test_admins_manage_restrictions_in_their_own_tenant_only(world, acme_admin, globex):
    client = signed_in_client(acme_admin)
    add_url = reverse("admin:conversations_attachmentrestriction_add")
    response = client.post(add_url, restriction_form(content_type="Video/*", reason="too large for our agents"))
    assert response.status_code == 302, response.content.decode()
    restriction = AttachmentRestriction.objects.get()
    assert (restriction.tenant_id, restriction.content_type, restriction.channel) == (world.tenant.pk, "video/*", "")

    again = client.post(add_url, restriction_form(content_type="video/*", reason="twice"))
    assert again.status_code == 200 and "already restricted" in again.content.decode()
    bad = client.post(add_url, restriction_form(content_type="videos", reason="not a type"))
    assert bad.status_code == 200 and "a family of them" in bad.content.decode()
    assert AttachmentRestriction.objects.count() == 1

    supervisor = signed_in_client(world.supervisor)  # may look, not change: it is the admins' policy
    assert supervisor.get(reverse("admin:conversations_attachmentrestriction_changelist")).status_code == 200
    assert supervisor.get(add_url).status_code == 403

    globex_admin = signed_in_client(make_member(globex, "globex-admin", Role.ADMIN))
    change_url = reverse("admin:conversations_attachmentrestriction_change", args=[restriction.pk])
    assert globex_admin.get(change_url).status_code == 404
    changelist = globex_admin.get(reverse("admin:conversations_attachmentrestriction_changelist"))
    assert "too large for our agents" not in changelist.content.decode()

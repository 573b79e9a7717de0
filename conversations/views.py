"""Attachments over HTTP: to the tenant's members, and to providers holding a signed, expiring link.

Files come from customers and the internet, so they are served as data, never as a page of ours:
the stored (sniffed) type with `nosniff`, shown inline only when they are raster images whose bytes
agree, downloaded otherwise, and sandboxed by their own Content-Security-Policy in case a browser
renders them anyway.
"""

from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET

from contactcenter.access import member_required
from contactcenter.tenancy import get_in_tenant_or_404
from conversations.files import shown_inline
from conversations.models import Attachment
from conversations.selectors import attachment_from_public_token


@require_GET
@member_required()
def attachment_download(request, public_id: str):
    """A file of the current tenant; another tenant's (or none) is 404."""
    attachment = get_in_tenant_or_404(Attachment, public_id=public_id)
    return _file_response(attachment)


@require_GET
def attachment_public(request, token: str):
    """A file named by a token of conversations.selectors.attachment_public_url (no sign-in:
    providers fetch these). A forged, altered or expired token is 404, like a missing file."""
    attachment = attachment_from_public_token(token)
    if attachment is None:
        raise Http404("This link is not valid (any more).")
    return _file_response(attachment)


def _file_response(attachment: Attachment) -> FileResponse:
    try:
        file = attachment.file.open("rb")
    except FileNotFoundError:
        raise Http404("This file is no longer stored.") from None
    head = file.read(16)
    file.seek(0)
    inline = shown_inline(attachment.content_type, head)
    response = FileResponse(
        file, as_attachment=not inline, filename=attachment.filename, content_type=attachment.content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response

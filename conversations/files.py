"""What a file is, told by its bytes, and which files each channel may carry.

Attachments arrive from customers (webhooks, email, the widget) and leave with agents' replies. In
both directions the bytes decide what a file is: a name or a browser's claim is not trusted, since
a file named `invoice.png` holding HTML could run as a page when someone opens it.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from conversations.errors import MessageNotAllowed

# (leading bytes, content type, extension)
SIGNATURES = (
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"PK\x03\x04", "application/zip", "zip"),
)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DOCUMENT_TYPES = frozenset({"application/pdf"})


def sniff_content_type(content: bytes) -> tuple[str, str] | None:
    """(content type, extension) when the first bytes say what the file is, else None."""
    for magic, content_type, extension in SIGNATURES:
        if content.startswith(magic):
            return content_type, extension
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


@dataclass(frozen=True)
class ChannelFileRule:
    types: frozenset[str]
    max_bytes: int
    described: str


MB = 1024 * 1024
# What each channel can deliver (the providers' own limits, rounded down).
OUTBOUND_FILE_RULES = {
    "sms": ChannelFileRule(IMAGE_TYPES, 5 * MB, "images (PNG, JPEG, GIF, WebP) up to 5 MB"),
    "whatsapp": ChannelFileRule(IMAGE_TYPES | DOCUMENT_TYPES, 16 * MB, "images and PDF documents up to 16 MB"),
    "messenger": ChannelFileRule(IMAGE_TYPES | DOCUMENT_TYPES, 25 * MB, "images and PDF documents up to 25 MB"),
    "webchat": ChannelFileRule(IMAGE_TYPES | DOCUMENT_TYPES, 10 * MB, "images and PDF documents up to 10 MB"),
    "email": ChannelFileRule(IMAGE_TYPES | DOCUMENT_TYPES, 20 * MB, "images and PDF documents up to 20 MB"),
}


class AttachmentNotAllowed(MessageNotAllowed):
    pass


def outbound_file_check(*, channel: str, filename: str, content: bytes, restrictions: Iterable = ()) -> str:
    """The content type of a file an agent wants to send on `channel`, or AttachmentNotAllowed
    saying what the channel takes.

    `restrictions` are the tenant's own refusals on top of the channel's rules (AttachmentRestriction
    rows for this channel, from conversations.selectors.attachment_restrictions_for); a match is
    refused with the reason the admin gave."""
    rule = OUTBOUND_FILE_RULES.get(channel)
    if rule is None:
        raise AttachmentNotAllowed(f"Files cannot be sent on {channel}.")
    sniffed = sniff_content_type(content)
    if sniffed is None or sniffed[0] not in rule.types:
        raise AttachmentNotAllowed(f"“{filename}” cannot be sent on {channel}: it takes {rule.described}.")
    if len(content) > rule.max_bytes:
        raise AttachmentNotAllowed(f"“{filename}” is too large for {channel}: it takes {rule.described}.")
    restriction_check(restrictions, filename=filename, content_type=sniffed[0], where=f"on {channel}")
    return sniffed[0]


def content_type_matches(pattern: str, content_type: str) -> bool:
    """Whether `content_type` is what `pattern` names: exactly (application/zip) or a whole family (video/*)."""
    pattern, content_type = pattern.strip().lower(), content_type.split(";")[0].strip().lower()
    if pattern.endswith("/*"):
        return content_type.startswith(pattern[:-1])
    return content_type == pattern


def restriction_check(restrictions: Iterable, *, filename: str, content_type: str, where: str) -> None:
    """AttachmentNotAllowed naming the admin's reason when one of `restrictions` (anything with
    `content_type` and `reason`) covers `content_type`."""
    for restriction in restrictions:
        if content_type_matches(restriction.content_type, content_type):
            reason = restriction.reason or "your organisation does not allow this kind of file"
            raise AttachmentNotAllowed(f"“{filename}” cannot be sent {where}: {reason}")


# Pictures a browser only ever shows as pictures. Everything else (HTML, SVG, PDF, executables, and
# any type we did not recognise) is served as a download, never rendered as a page of our site.
INLINE_TYPES = IMAGE_TYPES


def shown_inline(content_type: str, head: bytes) -> bool:
    """Whether a stored file may be shown in the browser: a raster image whose first bytes agree
    with its stored type (a type stored from a provider's claim is not trusted on its own)."""
    sniffed = sniff_content_type(head)
    return content_type in INLINE_TYPES and sniffed is not None and sniffed[0] == content_type

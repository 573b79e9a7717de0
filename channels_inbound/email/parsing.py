"""Reading an inbound-parse POST (SendGrid's Inbound Parse format, which other relays copy) into a
`ParsedEmail`. Pure functions over the request's fields and files: no database.

Anything a well-behaved relay never sends raises `MalformedEmail` with a reason for the 400.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.parser import HeaderParser
from html.parser import HTMLParser

from django.conf import settings

from conversations.files import sniff_content_type

ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
MAX_ATTACHMENTS = 50
MAX_MESSAGE_ID_LENGTH = 255  # Message.provider_message_id; a longer id is treated as missing


class MalformedEmail(ValueError):
    """The POST is not a well-formed inbound email; the message is the reason shown in the 400."""


@dataclass(frozen=True)
class EmailAttachment:
    filename: str
    content_type: str
    content: bytes


@dataclass
class ParsedEmail:
    from_address: str
    from_name: str
    subject: str
    body: str
    message_id: str  # as sent, "" when the email had none
    in_reply_to: list[str]
    references: list[str]
    attachments: list[EmailAttachment] = field(default_factory=list)
    refused_attachments: list[str] = field(default_factory=list)  # what was not kept, and why
    idempotency_id: str = ""  # message_id, or one derived from the content when it is missing

    @property
    def replied_to_ids(self) -> list[str]:
        """Message-IDs this email answers, the most direct first (In-Reply-To, then References backwards)."""
        return list(dict.fromkeys([*self.in_reply_to, *reversed(self.references)]))


# --- fields ---------------------------------------------------------------------------------------


def request_fields(request) -> dict[str, str]:
    """The POSTed text fields, each decoded with the charset the relay declares for it in `charsets`.

    Django decodes every field with one encoding. The relay sends each field in the email's own
    charset (windows-1252, iso-2022-jp, …), so the request is decoded as latin-1, which maps every
    byte to one character and loses nothing, and each field is then re-decoded from its bytes.
    """
    request.encoding = "iso-8859-1"
    raw = {key: request.POST.get(key, "") for key in request.POST}
    try:
        charsets = json.loads(_redecode(raw.get("charsets", ""), "utf-8") or "{}")
    except ValueError:
        charsets = {}
    if not isinstance(charsets, dict):
        charsets = {}
    # PostgreSQL text cannot hold NUL, and no legitimate email field carries one.
    return {key: _redecode(value, str(charsets.get(key) or "utf-8")).replace("\x00", "") for key, value in raw.items()}


def _redecode(value: str, charset: str) -> str:
    try:
        data = value.encode("iso-8859-1")
    except UnicodeEncodeError:  # already text (an RFC 2231 file name, say)
        return value
    try:
        return data.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")


def file_name(uploaded) -> str:
    return _redecode(uploaded.name or "", "utf-8")


def recipients(fields: dict[str, str]) -> list[str]:
    """Lower-cased addresses the email was delivered to: the SMTP envelope's first (what the relay
    really received it for), then To and Cc. Tolerant: it runs before authentication, to find the mailbox."""
    found: list[str] = []
    try:
        envelope = json.loads(fields.get("envelope") or "{}")
        if isinstance(envelope, dict) and isinstance(envelope.get("to"), list):
            found += [str(address) for address in envelope["to"]]
    except ValueError:
        pass
    for name in ("to", "cc"):
        found += [address for _, address in _addresses(name, fields.get(name, ""))]
    return list(dict.fromkeys(address.strip().lower() for address in found if ADDRESS.fullmatch(address.strip())))


def _addresses(name: str, value: str) -> list[tuple[str, str]]:
    try:
        header = policy.default.header_factory(name, value.replace("\r", " ").replace("\n", " "))
        return [(address.display_name, address.addr_spec) for address in header.addresses]
    except Exception:  # the email package's parser raises a variety of things on garbage
        return []


def _decoded_header(value: str) -> str:
    value = " ".join(value.split())
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a broken encoded word: keep the text as it came
        return value


def _message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    ids = MESSAGE_ID.findall(value)
    if not ids and "@" in value and len(value.split()) == 1:
        ids = [f"<{value.strip('<> ')}>"]  # some mailers leave out the angle brackets
    return [message_id for message_id in ids if len(message_id) <= MAX_MESSAGE_ID_LENGTH]


def _json_field(fields: dict[str, str], name: str, kind: type, default):
    if not fields.get(name):
        return default
    try:
        value = json.loads(fields[name])
    except ValueError:
        raise MalformedEmail(f"{name}: not valid JSON") from None
    if not isinstance(value, kind):
        raise MalformedEmail(f"{name}: expected a JSON {kind.__name__}")
    return value


# --- the whole email ------------------------------------------------------------------------------


def parse_inbound_email(fields: dict[str, str], files) -> ParsedEmail:
    """The email in `fields` (from request_fields) and `files` (request.FILES), or MalformedEmail."""
    senders = _addresses("from", fields.get("from", ""))
    if not senders or not ADDRESS.fullmatch(senders[0][1]):
        raise MalformedEmail("from: missing or not an email address")
    envelope = _json_field(fields, "envelope", dict, {})
    if "to" in envelope and not (
        isinstance(envelope["to"], list) and all(isinstance(address, str) for address in envelope["to"])
    ):
        raise MalformedEmail("envelope: to must be a list of addresses")

    headers = HeaderParser(policy=policy.compat32).parsestr(fields.get("headers", ""))
    message_ids = _message_ids(headers.get("Message-ID"))
    html = fields.get("html", "")
    body = fields.get("text", "").strip() or text_from_html(html)
    subject = _decoded_header(fields.get("subject") or headers.get("Subject") or "")
    email = ParsedEmail(
        from_address=senders[0][1].lower(),
        from_name=senders[0][0].strip(),
        subject=subject,
        body=body,
        message_id=message_ids[0] if message_ids else "",
        in_reply_to=_message_ids(headers.get("In-Reply-To")),
        references=_message_ids(headers.get("References")),
    )
    email.idempotency_id = email.message_id or _content_id(fields)
    _read_attachments(email, fields, files)
    return email


def _content_id(fields: dict[str, str]) -> str:
    """A stable stand-in for a missing Message-ID, so a relay's retry of the same email is still one
    message: a hash of what a retry repeats byte for byte (the header block and the body)."""
    digest = hashlib.sha256()
    for name in ("headers", "from", "subject", "text", "html"):
        digest.update(fields.get(name, "").encode() + b"\x00")
    return f"<{digest.hexdigest()[:40]}@no-message-id.switchboard.invalid>"


def _read_attachments(email: ParsedEmail, fields: dict[str, str], files) -> None:
    try:
        count = int(fields.get("attachments") or 0)
    except ValueError:
        raise MalformedEmail("attachments: not a whole number") from None
    if not 0 <= count <= MAX_ATTACHMENTS:
        raise MalformedEmail(f"attachments: must be between 0 and {MAX_ATTACHMENTS}")
    info = _json_field(fields, "attachment-info", dict, {})
    sent = sorted(key for key in files if re.fullmatch(r"attachment\d+", key))
    expected = [f"attachment{index}" for index in range(1, count + 1)]
    if sorted(expected) != sent:
        raise MalformedEmail(f"attachments: the count says {count} but the files sent are {', '.join(sent) or 'none'}")
    limit = settings.EMAIL_ATTACHMENT_MAX_BYTES
    for key in expected:
        uploaded = files[key]
        details = info.get(key) if isinstance(info.get(key), dict) else {}
        name = str(details.get("filename") or details.get("name") or file_name(uploaded) or key)
        if uploaded.size > limit:
            email.refused_attachments.append(f"“{name}” ({uploaded.size:,} bytes) is over the {limit:,}-byte limit")
            continue
        content = uploaded.read()
        declared = str(details.get("type") or uploaded.content_type or "")
        email.attachments.append(EmailAttachment(name, content_type_of(content, declared, name), content))


# --- content types --------------------------------------------------------------------------------

# A file that claims one of these and does not look like it is not trusted with the claim. Types a
# browser would run or render as a page are never kept: an attachment is data, not a web page.
SNIFFABLE = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")
ACTIVE_CONTENT = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/javascript", "application/javascript")
OCTET_STREAM = "application/octet-stream"


def content_type_of(content: bytes, declared: str, filename: str) -> str:
    """The attachment's type from its first bytes where they tell, else the sender's claim if it is
    harmless, else application/octet-stream."""
    declared = declared.split(";")[0].strip().lower()
    sniffed = (sniff_content_type(content) or (None,))[0]
    if sniffed == "application/zip" and declared.startswith("application/vnd.openxmlformats"):
        return declared  # .docx, .xlsx and .pptx are zip files
    if sniffed:
        return sniffed
    if declared in SNIFFABLE or declared in ACTIVE_CONTENT or not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", declared):
        return OCTET_STREAM
    return declared


# --- HTML to text ---------------------------------------------------------------------------------

SKIPPED_ELEMENTS = {"script", "style", "head", "title", "template", "noscript"}
BLOCK_ELEMENTS = {
    "p", "div", "br", "li", "tr", "table", "ul", "ol", "blockquote", "pre", "hr", "section", "article",
    "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip


class _HtmlText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in SKIPPED_ELEMENTS:
            self.skipping += 1
        elif tag in BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in SKIPPED_ELEMENTS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def text_from_html(html: str) -> str:
    """The readable text of an HTML email: tags dropped, scripts and styles dropped with their
    content, entities decoded, one line per block. Agents' pages show a body as text, so raw HTML
    is never stored."""
    if not html.strip():
        return ""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

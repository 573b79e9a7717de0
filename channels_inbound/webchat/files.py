"""What a visitor may upload: recognised by the bytes themselves, never by the name or the browser's word.

A file named `invoice.png` that holds HTML would be stored as an image and could run as a page when
an agent opens it; sniffing refuses it. The stored name takes the extension of what the bytes are.
"""

from pathlib import PurePath

from conversations.files import DOCUMENT_TYPES, IMAGE_TYPES
from conversations.files import sniff_content_type as sniff_file

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ALLOWED_KINDS = "images (PNG, JPEG, GIF, WebP) and PDF documents"
ALLOWED_TYPES = IMAGE_TYPES | DOCUMENT_TYPES


def sniff_content_type(content: bytes) -> tuple[str, str] | None:
    """(content type, extension) of a kind of file visitors may send, or None."""
    sniffed = sniff_file(content)
    return sniffed if sniffed and sniffed[0] in ALLOWED_TYPES else None


def filename_for(name: str, extension: str) -> str:
    stem = PurePath(name.replace("\\", "/")).stem.strip() or "file"
    return f"{stem[:150]}.{extension}"

"""What a visitor may upload: recognised by the bytes themselves, never by the name or the browser's word.

A file named `invoice.png` that holds HTML would be stored as an image and could run as a page when
an agent opens it; sniffing refuses it. The stored name takes the extension of what the bytes are.
"""

from pathlib import PurePath

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ALLOWED_KINDS = "images (PNG, JPEG, GIF, WebP) and PDF documents"
# (leading bytes, content type, extension)
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"%PDF-", "application/pdf", "pdf"),
)


def sniff_content_type(content: bytes) -> tuple[str, str] | None:
    """(content type, extension) of an allowed kind of file, or None."""
    for magic, content_type, extension in SIGNATURES:
        if content.startswith(magic):
            return content_type, extension
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def filename_for(name: str, extension: str) -> str:
    stem = PurePath(name.replace("\\", "/")).stem.strip() or "file"
    return f"{stem[:150]}.{extension}"

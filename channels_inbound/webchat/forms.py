"""What a well-formed upload from the widget looks like. Anything else is answered 400 with the reason."""

from dataclasses import dataclass

from django import forms

from channels_inbound.webchat.files import ALLOWED_KINDS, MAX_UPLOAD_BYTES, filename_for, sniff_content_type
from channels_inbound.webchat.protocol import CLIENT_ID, MAX_BODY_CHARS


@dataclass(frozen=True)
class SniffedFile:
    name: str
    content: bytes
    content_type: str


class UploadForm(forms.Form):
    id = forms.RegexField(
        rf"^{CLIENT_ID.pattern}\Z", max_length=64, error_messages={"invalid": "must be 8 to 64 letters, digits, - or _"}
    )
    body = forms.CharField(max_length=MAX_BODY_CHARS, required=False, strip=False)
    file = forms.FileField(allow_empty_file=False)

    def clean_file(self) -> SniffedFile:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"Files can be at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
        content = upload.read()
        sniffed = sniff_content_type(content)
        if sniffed is None:
            raise forms.ValidationError(f"Only {ALLOWED_KINDS} can be sent.")
        content_type, extension = sniffed
        return SniffedFile(filename_for(upload.name, extension), content, content_type)


def first_error(form: forms.Form) -> str:
    """One readable line, for the visitor."""
    for field, errors in form.errors.items():
        return errors[0] if field in ("file", "__all__") else f"{field}: {errors[0]}"
    return "That upload was not understood."

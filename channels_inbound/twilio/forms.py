"""What a well-formed Twilio webhook looks like. Anything else is answered 400 with the reason."""

from django import forms
from django.core.validators import RegexValidator, URLValidator

sid = lambda prefix: RegexValidator(rf"^{prefix}[0-9a-fA-F]{{32}}$", f"must be {prefix} followed by 32 hex digits")  # noqa: E731

MAX_MEDIA = 10
DELIVERY_STATUSES = (
    "accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled",
    "receiving", "received",
)


class MessagingWebhookForm(forms.Form):
    """An inbound SMS, WhatsApp or Messenger message."""

    MessageSid = forms.CharField(validators=[sid("(SM|MM|IM)")])
    AccountSid = forms.CharField(validators=[sid("AC")])
    From = forms.CharField(max_length=255)
    To = forms.CharField(max_length=255)
    Body = forms.CharField(max_length=10_000, required=False, strip=False)
    NumMedia = forms.IntegerField(min_value=0, max_value=MAX_MEDIA, required=False)
    ProfileName = forms.CharField(max_length=255, required=False)
    WaId = forms.CharField(max_length=32, required=False, validators=[RegexValidator(r"^\d+$", "must be digits")])

    def clean(self):
        cleaned = super().clean()
        count = cleaned.get("NumMedia") or 0
        media = []
        for index in range(count):
            url = self.data.get(f"MediaUrl{index}", "")
            content_type = self.data.get(f"MediaContentType{index}", "")
            try:
                URLValidator(schemes=["http", "https"])(url)
            except forms.ValidationError:
                raise forms.ValidationError(f"MediaUrl{index} is missing or not an http(s) URL") from None
            if not content_type or "/" not in content_type or len(content_type) > 255:
                raise forms.ValidationError(f"MediaContentType{index} is missing or not a content type")
            media.append({"url": url, "content_type": content_type})
        cleaned["media"] = media
        if not cleaned.get("Body") and not media and not self.errors:
            raise forms.ValidationError("a message needs a Body or media")
        return cleaned


class StatusCallbackForm(forms.Form):
    """A delivery status update for a message we sent."""

    MessageSid = forms.CharField(validators=[sid("(SM|MM|IM)")])
    AccountSid = forms.CharField(validators=[sid("AC")])
    MessageStatus = forms.ChoiceField(choices=[(status, status) for status in DELIVERY_STATUSES])
    ErrorCode = forms.IntegerField(required=False, min_value=0)
    ErrorMessage = forms.CharField(required=False, max_length=1000)


CALL_STATUSES = (
    "queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "canceled", "failed",
)
FAX_STATUSES = (
    "queued", "processing", "sending", "delivered", "receiving", "received", "no-answer", "busy", "failed", "canceled",
)


class VoiceCallForm(forms.Form):
    """An inbound phone call arriving at one of our numbers."""

    CallSid = forms.CharField(validators=[sid("CA")])
    AccountSid = forms.CharField(validators=[sid("AC")])
    From = forms.CharField(max_length=64)
    To = forms.CharField(max_length=64)
    CallStatus = forms.ChoiceField(choices=[(status, status) for status in CALL_STATUSES])
    CallerName = forms.CharField(max_length=255, required=False)


class CallStatusCallbackForm(forms.Form):
    """A status change of a call we answered (the caller hung up, say)."""

    CallSid = forms.CharField(validators=[sid("CA")])
    AccountSid = forms.CharField(validators=[sid("AC")])
    CallStatus = forms.ChoiceField(choices=[(status, status) for status in CALL_STATUSES])


class FaxWebhookForm(forms.Form):
    """An inbound fax; once received, `MediaUrl` is the PDF."""

    FaxSid = forms.CharField(validators=[sid("FX")])
    AccountSid = forms.CharField(validators=[sid("AC")])
    From = forms.CharField(max_length=64)
    To = forms.CharField(max_length=64)
    FaxStatus = forms.ChoiceField(choices=[(status, status) for status in FAX_STATUSES])
    NumPages = forms.IntegerField(min_value=0, max_value=10_000, required=False)
    MediaUrl = forms.CharField(max_length=1000, required=False, validators=[URLValidator(schemes=["http", "https"])])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("FaxStatus") == "received" and not cleaned.get("MediaUrl") and "MediaUrl" not in self.errors:
            raise forms.ValidationError("a received fax needs its MediaUrl")
        return cleaned


def first_error(form: forms.Form) -> str:
    """One readable line naming the field and what is wrong with it."""
    for field, errors in form.errors.items():
        label = "request" if field == "__all__" else field
        return f"{label}: {errors[0]}"
    return "malformed request"

"""Forms of the supervisors' pages."""

from datetime import date, timedelta

from django import forms

from contactcenter.models import Membership
from tasks.models import Queue

DEFAULT_DAYS = 7
MAX_DAYS = 366


class MemberChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Membership) -> str:
        return obj.display_name


class ReportFilterForm(forms.Form):
    """The reports' period (the tenant's calendar days, both included) and optional queue and agent.

    Queues and agents are chosen by public id among the current tenant's (the scoped managers), so
    another tenant's id is simply not a valid choice.
    """

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    queue = forms.ModelChoiceField(
        queryset=Queue.objects.order_by("name"), to_field_name="public_id", required=False, empty_label="All queues"
    )
    agent = MemberChoiceField(
        queryset=Membership.objects.filter(is_active=True).select_related("user").order_by("user__username"),
        to_field_name="public_id", required=False, empty_label="Everyone",
    )  # fmt: skip

    def __init__(self, data=None, *, today: date):
        if data is not None and not data:
            data = None  # no filters given: the last week, unbound
        super().__init__(data, initial={"start": today - timedelta(days=DEFAULT_DAYS - 1), "end": today})

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError("The period ends before it starts.")
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        return cleaned

    def filters(self) -> dict | None:
        """The chosen filters (the defaults when none were given), or None when they are invalid."""
        if not self.is_bound:
            return {"first_day": self.initial["start"], "last_day": self.initial["end"], "queue": None, "agent": None}
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return {"first_day": data["start"], "last_day": data["end"], "queue": data["queue"], "agent": data["agent"]}

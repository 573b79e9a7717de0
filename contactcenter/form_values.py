"""Form and query values that no view can store are refused with 400 before the view reads them.

PostgreSQL text cannot hold a NUL character, so a NUL in any field (a note, a tag, an id in a
lookup) would fail deep inside a service as a 500. Browsers never send one from our forms; only a
broken or hostile client does, and it is told what was wrong like any refused action (the domain
error message, status 400). The providers' webhooks (/webhooks/) are left to their own views, which
authenticate the caller first and log what they refuse.
"""

from contactcenter.errors import DomainError, DomainErrorMiddleware

WEBHOOKS_PREFIX = "/webhooks/"


class FormValueRefused(DomainError):
    status_code = 400


def _has_nul(query_dict) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in query_dict.lists())


class FormValuesMiddleware:
    """Refuses a request whose query or form holds a NUL character (after the CSRF check)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(WEBHOOKS_PREFIX):
            return None
        if _has_nul(request.GET) or (request.method == "POST" and _has_nul(request.POST)):
            refused = FormValueRefused(
                "The form held a character that cannot be stored (NUL). Remove it and try again."
            )
            return DomainErrorMiddleware(self.get_response).process_exception(request, refused)
        return None

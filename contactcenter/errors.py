"""Domain errors: a request that is understood but not allowed in the current state.

Services raise a DomainError subclass with a message written for the person who clicked; the
middleware below turns it into HTTP 409 with that message (a small fragment for htmx requests, a
page otherwise). Services raise it before writing anything, and their transaction rolls back, so
nothing is half-changed.
"""

from django.shortcuts import render


class DomainError(Exception):
    """Base of every rule a service enforces. `str(error)` is shown to the user."""

    status_code = 409


class TransitionNotAllowed(DomainError):
    def __init__(self, entity: str, current: str, wanted: str, reason: str = ""):
        self.entity, self.current, self.wanted = entity, current, wanted
        message = f"This {entity} is {current.replace('_', ' ')} and cannot become {wanted.replace('_', ' ')}."
        super().__init__(f"{message} {reason}".strip())


class AlreadyTaken(DomainError):
    """Someone else won the race for the same thing ("already taken by X")."""


class DomainErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, DomainError):
            return None
        if not getattr(request, "htmx", False):
            return render(
                request,
                "domain_error.html",
                {"error": str(exception)},
                status=exception.status_code,
            )
        response = render(
            request,
            "partials/domain_error.html",
            {"error": str(exception)},
            status=exception.status_code,
        )
        # The message is an out-of-band fragment; the element the request targeted stays as it was.
        response["HX-Reswap"] = "none"
        return response

"""The rules task services enforce, as DomainErrors (shown to people as HTTP 409)."""

from contactcenter.errors import DomainError


class DispositionRequired(DomainError):
    pass


class DispositionNotAllowed(DomainError):
    pass


class AssignmentNotAllowed(DomainError):
    pass


class TaskNotAllowed(DomainError):
    pass

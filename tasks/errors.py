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


class OfferNotAllowed(DomainError):
    """The offer is not this agent's, has expired, or was withdrawn."""


class AgentStatusNotAllowed(DomainError):
    pass


class QueueNotAllowed(DomainError):
    pass


class AtCapacity(DomainError):
    """The agent already holds as much work of this channel as their capacity allows."""

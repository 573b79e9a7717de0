"""The rules conversation and task services enforce, as DomainErrors (shown to people as HTTP 409).

Every message is written for the person who clicked.
"""

from contactcenter.errors import DomainError
from contactcenter.tenancy import TenantNotSet, current_tenant_id


class CrossTenantLink(DomainError):
    """Two rows of different tenants were about to be linked."""


class ChangedMeanwhile(DomainError):
    """The row changed between the moment the person saw it and their action (compare-and-set lost)."""


class ReasonRequired(DomainError):
    pass


class InvalidIdentity(DomainError):
    pass


class MessageNotAllowed(DomainError):
    pass


class MergeNotAllowed(DomainError):
    pass


class SplitNotAllowed(DomainError):
    pass


class TransferNotAllowed(DomainError):
    pass


class TagsNotAllowed(DomainError):
    pass


def ensure_same_tenant(*rows) -> int:
    """The one tenant of `rows` (None entries are skipped) and of the current context, or refuse.

    Foreign keys do not know about tenants: a task of acme could point at a globex agent. Every
    service that links rows calls this first.
    """
    tenant_ids = {row.tenant_id for row in rows if row is not None}
    current = current_tenant_id()
    if current is not None:
        tenant_ids.add(current)
    if len(tenant_ids) > 1:
        raise CrossTenantLink("These records belong to different organisations and cannot be linked.")
    if not tenant_ids:
        raise TenantNotSet("no tenant: call services inside tenant_context(tenant)")
    return tenant_ids.pop()

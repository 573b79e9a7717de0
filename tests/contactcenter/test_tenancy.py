"""Tenant scoping: the manager that fails closed, the 404 helper, and the guard over every model."""

import pytest
from django import forms
from django.apps import apps
from django.db import connection, models
from django.http import Http404
from django.test.utils import isolate_apps

from channels_inbound.models import ChannelEndpoint, Provider
from contactcenter.models import Membership, Tenant
from contactcenter.tenancy import (
    CrossTenantWrite,
    TenantNotSet,
    TenantOwnedModel,
    TenantScopedManager,
    current_tenant_id,
    dangerously_all_tenants,
    get_in_tenant_or_404,
    tenant_context,
)

PROJECT_APPS = ("contactcenter", "conversations", "tasks", "channels_inbound")


def models_missing_the_tenant_base(candidates) -> list[str]:
    """Every model that belongs to a tenant (has a foreign key to Tenant) but skips the base.

    Inheriting the base is what gives a model the scoped manager, the public id and the write
    check; a model that points at Tenant any other way would be readable across tenants.
    """
    offenders = []
    for model in candidates:
        if model is Tenant or model._meta.abstract:
            continue
        points_at_tenant = any(
            getattr(field, "related_model", None) is Tenant for field in model._meta.get_fields() if field.concrete
        )
        uses_base = (
            issubclass(model, TenantOwnedModel)
            and isinstance(model._default_manager, TenantScopedManager)
            and isinstance(model._base_manager, TenantScopedManager)
        )
        if points_at_tenant and not uses_base:
            offenders.append(f"{model._meta.label}")
    return offenders


def project_models():
    return [model for app in PROJECT_APPS for model in apps.get_app_config(app).get_models()]


def test_every_tenant_owned_model_of_the_project_uses_the_base():
    assert project_models(), "the guard must see the project's models"
    assert models_missing_the_tenant_base(project_models()) == []


@isolate_apps("tests")
def test_the_guard_catches_a_model_that_skips_the_base():
    class Invoice(models.Model):  # a tenant-owned concept written the wrong way
        tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)
        total = models.IntegerField()

        class Meta:
            app_label = "tests"

    class Receipt(TenantOwnedModel):  # the right way
        total = models.IntegerField()

        class Meta(TenantOwnedModel.Meta):
            app_label = "tests"

    class ReceiptWithOwnMeta(TenantOwnedModel):  # a Meta that forgets to subclass the base's
        total = models.IntegerField()

        class Meta:
            app_label = "tests"

    assert models_missing_the_tenant_base([Invoice, Receipt, ReceiptWithOwnMeta]) == ["tests.Invoice"]
    # Django finds the base manager through the abstract parent, so forgetting the Meta base
    # does not open related access.
    assert isinstance(ReceiptWithOwnMeta._base_manager, TenantScopedManager)


def endpoint(tenant, address):
    with tenant_context(tenant):
        return ChannelEndpoint.objects.create(tenant=tenant, provider=Provider.TWILIO, channel="sms", address=address)


def test_queries_outside_a_tenant_fail_closed(acme_agent):
    with pytest.raises(TenantNotSet):
        list(Membership.objects.all())
    with pytest.raises(TenantNotSet):
        Membership.objects.filter(pk=acme_agent.pk).exists()


def test_queries_inside_a_tenant_see_only_its_rows(acme, globex):
    acme_number = endpoint(acme, "+15550000001")
    globex_number = endpoint(globex, "+15550000002")
    with tenant_context(acme):
        assert list(ChannelEndpoint.objects.all()) == [acme_number]
        assert not ChannelEndpoint.objects.filter(pk=globex_number.pk).exists()
    with tenant_context(globex):
        assert list(ChannelEndpoint.objects.values_list("address", flat=True)) == ["+15550000002"]
    with dangerously_all_tenants():
        assert ChannelEndpoint.objects.count() == 2


def test_related_access_is_scoped_too(acme, globex_agent):
    # Django follows foreign keys through the base manager; ours is the scoped one, so walking a
    # relation from the current tenant cannot reach another tenant's row.
    with tenant_context(acme):
        assert not Membership._base_manager.filter(pk=globex_agent.pk).exists()
    with tenant_context(globex_agent.tenant_id):
        assert Membership._base_manager.filter(pk=globex_agent.pk).exists()


def test_writing_a_row_of_another_tenant_is_refused(acme, globex):
    with tenant_context(acme):
        with pytest.raises(CrossTenantWrite):
            ChannelEndpoint.objects.create(tenant=globex, provider=Provider.TWILIO, channel="sms", address="+1555")
        with pytest.raises(CrossTenantWrite):
            ChannelEndpoint(tenant=globex, provider=Provider.TWILIO, channel="sms", address="+1556").save()
    with dangerously_all_tenants():
        assert not ChannelEndpoint.objects.exists()


def test_get_in_tenant_or_404_hides_other_tenants_objects(acme, globex):
    globex_number = endpoint(globex, "+15550000002")
    with tenant_context(acme):
        with pytest.raises(Http404):
            get_in_tenant_or_404(ChannelEndpoint, public_id=globex_number.public_id)
        with pytest.raises(Http404):
            get_in_tenant_or_404(ChannelEndpoint, pk=globex_number.pk)
        with pytest.raises(Http404):
            get_in_tenant_or_404(ChannelEndpoint, pk="not-a-number")
    with tenant_context(globex):
        assert get_in_tenant_or_404(ChannelEndpoint, public_id=globex_number.public_id) == globex_number


def test_tenant_context_nests_and_restores(acme, globex):
    assert current_tenant_id() is None
    with tenant_context(acme):
        with tenant_context(globex.pk):
            assert current_tenant_id() == globex.pk
        assert current_tenant_id() == acme.pk
        with dangerously_all_tenants():
            assert current_tenant_id() is None
        assert current_tenant_id() == acme.pk
    assert current_tenant_id() is None
    with pytest.raises(TypeError):
        with tenant_context("acme"):
            pass


def test_public_ids_are_unguessable_and_distinct(acme):
    numbers = [endpoint(acme, f"+1555000{i:04d}") for i in range(50)]
    public_ids = {number.public_id for number in numbers}
    assert len(public_ids) == 50
    assert all(len(public_id) == 16 and not public_id.isdigit() for public_id in public_ids)


def test_a_queryset_built_outside_any_tenant_is_scoped_by_the_tenant_in_force_when_it_runs(acme, globex):
    acme_number, globex_number = endpoint(acme, "+15550000001"), endpoint(globex, "+15550000002")
    built_early = ChannelEndpoint.objects.order_by("pk")  # as a form or class attribute would, at import
    with pytest.raises(TenantNotSet):
        list(built_early)
    with tenant_context(acme):
        assert list(built_early.all()) == [acme_number]
    with tenant_context(globex):
        assert list(built_early.all()) == [globex_number]
    with dangerously_all_tenants():
        assert list(built_early.all()) == [acme_number, globex_number]


class EndpointChoiceForm(forms.Form):
    """Declared at import time, like any form with a choice of tenant-owned rows."""

    endpoint = forms.ModelChoiceField(queryset=ChannelEndpoint.objects.all())


def test_a_form_declared_at_import_offers_only_the_current_tenants_rows(acme, globex):
    acme_number, globex_number = endpoint(acme, "+15550000001"), endpoint(globex, "+15550000002")
    with tenant_context(acme):
        form = EndpointChoiceForm(data={"endpoint": globex_number.pk})
        assert [choice for choice, _ in form.fields["endpoint"].choices if choice] == [acme_number.pk]
        assert not form.is_valid()  # another tenant's row cannot be chosen by posting its id
        assert EndpointChoiceForm(data={"endpoint": acme_number.pk}).is_valid()


def test_the_scope_compiles_to_a_plain_indexed_tenant_filter(acme):
    with tenant_context(acme):
        sql, params = ChannelEndpoint.objects.filter(address="+1").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plan = " ".join(row[0] for row in cursor.fetchall())
    assert acme.pk in params
    # PostgreSQL folds COALESCE(<constant>, tenant_id) to the constant: no function left in the plan.
    assert "COALESCE" not in plan.upper()

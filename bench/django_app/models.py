"""django-tenants' registry, in the public schema. The tenants' tables are
``bench/django_fleet``'s models: in the serving comparison they are tenantsvc's tables, which
Django only queries (no migration runs in those schemas)."""

from django.conf import settings
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    # Saving a new tenant creates and migrates its schema (django-tenants' default) when the
    # tenants' tables are Django's; not when they are tenantsvc's, provisioned already.
    auto_create_schema = settings.BENCH_DJANGO_FLEET
    auto_drop_schema = False


class Domain(DomainMixin):
    """Here the ``X-Tenant-ID`` value, not a hostname (``middleware.py``)."""

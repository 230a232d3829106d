from typing import Any

from django_tenants.middleware.main import TenantMainMiddleware


class TenantHeaderMiddleware(TenantMainMiddleware):
    """django-tenants' middleware, unchanged but for where the tenant's name comes from: the
    ``X-Tenant-ID`` header that tenantsvc reads, looked up in django-tenants' domain table."""

    @staticmethod
    def hostname_from_request(request: Any) -> str:
        return str(request.headers.get("X-Tenant-ID", ""))

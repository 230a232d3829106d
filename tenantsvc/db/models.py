"""Imports every mapped module so both metadata objects are complete (for Alembic)."""

from tenantsvc.db.base import SharedBase, TenantBase
from tenantsvc.idempotency import models as _idempotency
from tenantsvc.orders import models as _orders
from tenantsvc.products import models as _products
from tenantsvc.tenancy import models as _tenancy
from tenantsvc.users import models as _users

__all__ = ["SharedBase", "TenantBase", "_idempotency", "_orders", "_products", "_tenancy", "_users"]

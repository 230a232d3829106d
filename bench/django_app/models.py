"""django-tenants' registry (in the public schema) and the tenant tables tenantsvc made."""

from django.conf import settings
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    # Saving a new tenant creates and migrates its schema (django-tenants' default) when the
    # tenants' tables are Django's; not when they are tenantsvc's, provisioned already.
    auto_create_schema = settings.BENCH_DJANGO_FLEET
    auto_drop_schema = False


class Domain(DomainMixin):
    """Here the ``X-Tenant-ID`` value, not a hostname (``middleware.py``)."""


class Product(models.Model):
    name = models.CharField(max_length=200)
    price_cents = models.BigIntegerField()
    stock = models.IntegerField()
    created_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "products"


class User(models.Model):
    email = models.CharField(max_length=320, null=True)
    name = models.CharField(max_length=200, null=True)
    created_at = models.DateTimeField()
    erased_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "users"


class Order(models.Model):
    user = models.ForeignKey(User, on_delete=models.DO_NOTHING)
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "orders"


class OrderItem(models.Model):
    pk = models.CompositePrimaryKey("order_id", "product_id")
    order = models.ForeignKey(Order, on_delete=models.DO_NOTHING)
    product = models.ForeignKey(Product, on_delete=models.DO_NOTHING)
    quantity = models.IntegerField()
    unit_price_cents = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = "order_items"

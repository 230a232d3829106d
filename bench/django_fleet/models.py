from django.db import models
from django.db.models import Q


class Product(models.Model):
    name = models.CharField(max_length=200)
    price_cents = models.BigIntegerField()
    stock = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "products"
        constraints = [
            models.CheckConstraint(condition=Q(stock__gte=0), name="stock_nonnegative"),
            models.CheckConstraint(condition=Q(price_cents__gte=0), name="price_nonnegative"),
        ]
        indexes = [
            models.Index(fields=["id"], name="products_live_id_idx",
                         condition=Q(deleted_at__isnull=True)),
        ]  # fmt: skip


class User(models.Model):
    email = models.CharField(max_length=320, null=True, unique=True)
    name = models.CharField(max_length=200, null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "users"


class Order(models.Model):
    user = models.ForeignKey(User, on_delete=models.PROTECT, db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "orders"
        indexes = [
            models.Index(fields=["user", "id"], name="orders_user_id_id_idx"),
            models.Index(fields=["id"], name="orders_cancelled_id_idx",
                         condition=Q(cancelled_at__isnull=False)),
        ]  # fmt: skip


class OrderItem(models.Model):
    pk = models.CompositePrimaryKey("order_id", "product_id")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.IntegerField()
    unit_price_cents = models.BigIntegerField()

    class Meta:
        db_table = "order_items"
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0),
                                              name="quantity_positive")]  # fmt: skip

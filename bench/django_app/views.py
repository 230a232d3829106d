"""W3 and W4 as a Django developer writes them."""

import json
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse

from bench.django_fleet.models import Order, OrderItem, Product, User

FIELDS = ("id", "name", "price_cents", "stock", "created_at", "deleted_at")


def products(request: HttpRequest) -> JsonResponse:
    after_id = int(request.GET.get("after_id", 0))
    limit = int(request.GET.get("limit", 20))
    rows = list(
        Product.objects.filter(deleted_at__isnull=True, id__gt=after_id)
        .order_by("id")
        .values(*FIELDS)[: limit + 1]
    )
    more = len(rows) > limit
    page = {"items": rows[:limit], "next_after_id": rows[limit - 1]["id"] if more else None}
    return JsonResponse(page)


def orders(request: HttpRequest) -> JsonResponse:
    body: dict[str, Any] = json.loads(request.body)
    (line,) = body["items"]
    with transaction.atomic():
        user = User.objects.filter(id=body["user_id"], erased_at__isnull=True).first()
        if user is None:
            return JsonResponse({"title": "Not found"}, status=404)
        product = (
            Product.objects.select_for_update()
            .filter(id=line["product_id"], deleted_at__isnull=True)
            .first()
        )
        if product is None:
            return JsonResponse({"title": "Not found"}, status=404)
        if product.stock < line["quantity"]:
            return JsonResponse({"title": "Insufficient stock"}, status=409)
        Product.objects.filter(id=product.id).update(stock=F("stock") - line["quantity"])
        order = Order.objects.create(user=user)
        OrderItem.objects.create(
            order=order, product=product, quantity=line["quantity"],
            unit_price_cents=product.price_cents,
        )  # fmt: skip
    item = {"product_id": product.id, "quantity": line["quantity"],
            "unit_price_cents": product.price_cents}  # fmt: skip
    return JsonResponse(
        {"id": order.id, "user_id": user.id, "created_at": order.created_at, "items": [item],
         "total_cents": line["quantity"] * product.price_cents, "cancelled_at": None},
        status=201,
    )  # fmt: skip

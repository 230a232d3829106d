from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "bench.django_app"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

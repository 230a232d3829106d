from django.apps import AppConfig


class SkuConfig(AppConfig):
    name = "bench.django_fleet.sku"
    label = "fleet_sku"

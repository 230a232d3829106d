from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from bench.django_app import views

urlpatterns = [
    path("products", require_GET(views.products)),
    path("orders", csrf_exempt(require_POST(views.orders))),
]

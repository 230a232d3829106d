"""Django settings for the comparison, from the environment ``bench/django_compare.py`` sets:
``BENCH_DJANGO_DSN`` (host, port, user, database), ``BENCH_DJANGO_TUNED`` (1: persistent
connections and django-tenants' ``TENANT_LIMIT_SET_CALLS``; 0: Django's defaults), and
``BENCH_DJANGO_FLEET`` (set: a new tenant gets its schema and tables from Django's migrations,
``bench/django_fleet``; ``sku``: with W2's change too; unset: the tenants are tenantsvc's)."""

import os
from urllib.parse import urlsplit

_dsn = urlsplit(os.environ["BENCH_DJANGO_DSN"])
_tuned = os.environ.get("BENCH_DJANGO_TUNED") == "1"

SECRET_KEY = "bench-only"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
_fleet = os.environ.get("BENCH_DJANGO_FLEET", "")
BENCH_DJANGO_FLEET = bool(_fleet)

SHARED_APPS = ["django_tenants", "django.contrib.contenttypes", "bench.django_app"]
# As django-tenants' documentation sets a project up. Serving tenantsvc's schemas, Django
# only queries these apps' tables there.
TENANT_APPS = ["django.contrib.contenttypes", "bench.django_fleet"]
TENANT_APPS += ["bench.django_fleet.sku"] if _fleet == "sku" else []
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "shop.Client"
TENANT_DOMAIN_MODEL = "shop.Domain"
DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": _dsn.path.lstrip("/"),
        "USER": _dsn.username,
        "PASSWORD": _dsn.password or "",
        "HOST": _dsn.hostname,
        "PORT": _dsn.port,
        "CONN_MAX_AGE": None if _tuned else 0,
    }
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
TENANT_LIMIT_SET_CALLS = _tuned
MIDDLEWARE = ["bench.django_app.middleware.TenantHeaderMiddleware"]
ROOT_URLCONF = "bench.django_app.urls"

"""A tenant's tables as a django-tenants project creates them: the same four tables tenantsvc
provisions (constraints and indexes included) as Django models with their migration, which
django-tenants runs in every new tenant's schema. ``sku`` holds W2's change as a Django
migration. Used by ``bench/django_compare.py --fleet`` only."""

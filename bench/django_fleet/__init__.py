"""A tenant's tables as a django-tenants project declares them: the four tables tenantsvc
provisions (constraints and indexes included) as Django models and their migration. In
``bench/django_fleet_compare.py`` django-tenants runs that migration in every new tenant's
schema (``sku`` holds W2's change); in ``bench/django_compare.py`` the models query the tables
tenantsvc provisioned."""

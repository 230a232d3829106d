"""The W3 and W4 endpoints written the usual django-tenants way, to compare tenantsvc with on
the same machine, data and load (``python -m bench.django_compare``).

Idiomatic Django, no hand-tuning: django-tenants' own middleware resolves the tenant per
request (a query on its domain table) and its database backend sets the search_path; the views
use the ORM, ``transaction.atomic`` and ``select_for_update``. The models
(``bench/django_fleet``) describe the tables tenantsvc provisions, so both serve the very same
rows.
"""

"""Test support for tenantsvc and for apps built on it: a real PostgreSQL for the test
session, the app running in-process, and tenants made on demand.

Use it from a ``conftest.py``::

    pytest_plugins = ["tenantsvc.testing.plugin"]

Install with ``pip install 'tenantsvc[testing]'``.
"""

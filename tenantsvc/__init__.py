"""tenantsvc: a schema-per-tenant SaaS backend on PostgreSQL."""

from importlib.metadata import version

__version__ = version("tenantsvc")

"""tenantsvc: a schema-per-tenant SaaS backend on PostgreSQL."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tenantsvc")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

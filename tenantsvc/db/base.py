"""Declarative bases: one for the shared registry schema, one for tenant tables.

Tenant tables carry no schema: which tenant they belong to is decided per transaction by the
search_path, so the same mapped classes serve every tenant.
"""

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, FetchedValue, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenantsvc.tenancy.slugs import SHARED_SCHEMA

NAMING = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class TenantBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SharedBase(DeclarativeBase):
    metadata = MetaData(schema=SHARED_SCHEMA, naming_convention=NAMING)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class RowVersionMixin:
    """``xmin``: the id of the transaction that wrote this version of the row, which any UPDATE
    changes (a PATCH, the stock an order takes). The row's ETag (``preconditions.py``): no
    column to keep up, no trigger, no migration, and the same on a replica. VACUUM's freezing
    keeps it (the column reads the raw xmin); an export and import (or a clone) writes the rows
    anew, so their ETags change and a client reads again. Never written, and no part of the
    table's DDL (a system column); fetched back after each INSERT and UPDATE."""

    xmin: Mapped[int] = mapped_column(
        "xmin", BigInteger, system=True,
        server_default=FetchedValue(), server_onupdate=FetchedValue(),
    )  # fmt: skip
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tenantsvc.db.base import CreatedAtMixin, RowVersionMixin, TenantBase

if TYPE_CHECKING:
    from tenantsvc.orders.models import Order


class User(RowVersionMixin, CreatedAtMixin, TenantBase):
    """An erased user (``DELETE /users/{id}``) keeps its id and orders, and nothing else."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "(erased_at IS NULL) = (email IS NOT NULL AND name IS NOT NULL)",
            name="users_erased_check",
        ),
        # Unique whatever the case (t0005): Ann@x.io and ann@x.io are one person.
        Index("users_email_lower_key", text("lower(email)"), unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # lazy="raise": a relationship that was not eagerly loaded fails loudly instead of
    # issuing one query per row.
    orders: Mapped[list["Order"]] = relationship(
        back_populates="user", lazy="raise", order_by="Order.id"
    )

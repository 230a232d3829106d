from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Identity, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tenantsvc.db.base import CreatedAtMixin, TenantBase

if TYPE_CHECKING:
    from tenantsvc.orders.models import Order


class User(CreatedAtMixin, TenantBase):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))

    # lazy="raise": a relationship that was not eagerly loaded fails loudly instead of
    # issuing one query per row.
    orders: Mapped[list["Order"]] = relationship(
        back_populates="user", lazy="raise", order_by="Order.id"
    )

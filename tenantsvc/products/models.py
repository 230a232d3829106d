from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantsvc.db.base import CreatedAtMixin, RowVersionMixin, TenantBase


class Product(RowVersionMixin, CreatedAtMixin, TenantBase):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_nonnegative"),
        CheckConstraint("price_cents >= 0", name="price_nonnegative"),
        # Live-row listing is the hot path; soft-deleted rows stay out of its index.
        Index("products_live_id_idx", "id", postgresql_where="deleted_at IS NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

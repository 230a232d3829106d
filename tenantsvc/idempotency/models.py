from sqlalchemy import Index, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantsvc.db.base import CreatedAtMixin, TenantBase


class IdempotencyKey(CreatedAtMixin, TenantBase):
    """A request's answer, kept for a while under the key its client sent (``store.py``)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("idempotency_keys_created_at_idx", "created_at"),)

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[int | None] = mapped_column(SmallInteger)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)

"""Products, soft-deleted by default: every read filters ``deleted_at IS NULL`` unless asked."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update

from tenantsvc.db.repository import Repository
from tenantsvc.products.models import Product

LIVE = Product.deleted_at.is_(None)


class ProductRepository(Repository):
    async def get(
        self, product_id: int, *, include_deleted: bool = False, for_update: bool = False
    ) -> Product | None:
        query = select(Product).where(Product.id == product_id)
        if not include_deleted:
            query = query.where(LIVE)
        if for_update:
            query = query.with_for_update(key_share=True)  # as an UPDATE of its columns locks it
        found: Product | None = await self.session.scalar(query)
        return found

    async def add(self, **fields: Any) -> Product:
        product = Product(**fields)
        self.session.add(product)
        await self.session.flush()
        return product

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Core INSERT with executemany batching: no ORM identity map for thousands of rows."""
        result = await self.session.execute(
            insert(Product).returning(Product.id, sort_by_parameter_order=True), rows
        )
        return list(result.scalars())

    async def set_deleted(self, product_id: int, *, deleted: bool) -> Product | None:
        """Soft delete (or restore) a product; None when there was no such live (or deleted)
        product, so deleting twice is a 404 rather than a silent success."""
        already = LIVE if deleted else Product.deleted_at.is_not(None)
        statement = (
            update(Product)
            .where(Product.id == product_id, already)
            .values(deleted_at=func.now() if deleted else None)
            .returning(Product)
        )
        found: Product | None = await self.session.scalar(
            statement, execution_options={"populate_existing": True}
        )
        return found

"""Benchmark data: PRODUCTS products per tenant with ids 1..N (every 10th soft-deleted, STOCK
each) and USERS users, written with one INSERT ... SELECT per table per tenant."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def seed_sql(schema: str, products: int, users: int, stock: int) -> list[str]:
    return [
        f"INSERT INTO {schema}.products (name, price_cents, stock, deleted_at) "
        f"SELECT 'product ' || g, 100 + g % 900, {stock}, "
        f"CASE WHEN g % 10 = 0 THEN now() END FROM generate_series(1, {products}) g",
        f"INSERT INTO {schema}.users (email, name) "
        f"SELECT 'user' || g || '@example.com', 'user ' || g FROM generate_series(1, {users}) g",
    ]


async def seed(
    engine: AsyncEngine, schemas: list[str], products: int, users: int, stock: int
) -> None:
    for schema in schemas:
        async with engine.begin() as conn:
            for statement in seed_sql(schema, products, users, stock):
                await conn.execute(text(statement))


async def check_invariants(
    engine: AsyncEngine, schemas: list[str], stock: int
) -> dict[str, object]:
    """live stock + units sold (by orders not cancelled) = live products x STOCK, no negative
    stock, no item for a deleted product, per tenant."""
    bad: list[str] = []
    sold_total = 0
    async with engine.connect() as conn:
        for schema in schemas:
            live, live_stock, negative, sold, on_deleted = (await conn.execute(text(
                f"SELECT (SELECT count(*) FROM {schema}.products WHERE deleted_at IS NULL), "
                f"(SELECT coalesce(sum(stock), 0) FROM {schema}.products "
                "WHERE deleted_at IS NULL), "
                f"(SELECT count(*) FROM {schema}.products WHERE stock < 0), "
                f"(SELECT coalesce(sum(i.quantity), 0) FROM {schema}.order_items i "
                f"JOIN {schema}.orders o ON o.id = i.order_id WHERE o.cancelled_at IS NULL), "
                f"(SELECT count(*) FROM {schema}.order_items i JOIN {schema}.products p "
                f"ON p.id = i.product_id WHERE p.deleted_at IS NOT NULL)"
            ))).one()  # fmt: skip
            sold_total += sold
            if live_stock + sold != live * stock or negative or on_deleted:
                bad.append(schema)
    return {"invariant_ok": not bad, "bad_tenants": bad[:5], "units_sold": sold_total}

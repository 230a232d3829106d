"""First-start bootstrap for the embedded default: a migrated database and a demo tenant.

The caller keeps the demo key beside the embedded data directory so every start can print a
working ``curl``; this happens only on the embedded development database.
"""

from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.session import tenant_session
from tenantsvc.tenancy import admin
from tenantsvc.tenancy.errors import TenantNotFoundError
from tenantsvc.tenancy.fleet import migrate_all
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.uow import UnitOfWork

DEMO_SLUG = "demo"
DEMO_PRODUCTS = [
    {"name": "Espresso beans 1kg", "price_cents": 2490, "stock": 40},
    {"name": "Pour-over kettle", "price_cents": 5900, "stock": 12},
    {"name": "Ceramic mug", "price_cents": 1250, "stock": 100},
]


async def _seed(engine: AsyncEngine, schema: str, role: str | None) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    async with tenant_session(async_sessionmaker(engine), schema, role) as session:
        uow = UnitOfWork(session)
        await uow.users.add(email="ada@example.com", name="Ada Lovelace")
        await uow.products.add_many(DEMO_PRODUCTS)


async def bootstrap_demo(engine: AsyncEngine, known_key: str | None) -> str:
    """Migrate everything and make sure the demo tenant exists; returns a working API key
    (``known_key`` when the tenant already exists and its key was kept)."""
    await migrate_all(engine)
    async with engine.connect() as conn:
        try:
            await admin.get_tenant(conn, DEMO_SLUG)
        except TenantNotFoundError:
            new = await create_tenant(engine, DEMO_SLUG, "Demo tenant")
            await _seed(engine, new.schema, new.role)
            return new.api_key
    if known_key is not None:
        return known_key
    async with engine.begin() as conn:
        _, key = await admin.create_key(conn, DEMO_SLUG)
    return key

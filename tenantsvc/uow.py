"""Unit of work: the repositories of one tenant transaction.

Repositories add and flush; none of them commits. The transaction is committed once, by the
request's session dependency (or a CLI command's transaction), so everything a handler did
through the unit of work lands together or not at all.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.orders.repository import OrderRepository
from tenantsvc.products.repository import ProductRepository
from tenantsvc.users.repository import UserRepository


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.products = ProductRepository(session)
        self.orders = OrderRepository(session)

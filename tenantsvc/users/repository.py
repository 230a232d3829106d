"""Users; an erased one (``erase``) keeps only its id and creation time, for its orders, and
every read here passes it over as if it had never been."""

from sqlalchemy import func, select

from tenantsvc.db.repository import Repository
from tenantsvc.idempotency import store as idempotency
from tenantsvc.users.models import User

PRESENT = User.erased_at.is_(None)


class UserRepository(Repository):
    async def get(self, user_id: int, *, for_update: bool = False) -> User | None:
        """``for_update``: locked as an UPDATE of its other columns locks it (FOR NO KEY
        UPDATE), so the orders that name the user meanwhile (their foreign-key check) go on."""
        query = select(User).where(User.id == user_id, PRESENT)
        found: User | None = await self.session.scalar(
            query.with_for_update(key_share=True) if for_update else query
        )
        return found

    async def exists(self, user_id: int) -> bool:
        return await self.get(user_id) is not None

    async def get_by_email(self, email: str) -> User | None:
        """Whatever its case, as the unique index compares (PostgreSQL's lower(), on both)."""
        same = func.lower(User.email) == func.lower(email)
        found: User | None = await self.session.scalar(select(User).where(same))
        return found

    async def page(self, after_id: int, limit: int) -> list[User]:
        query = select(User).where(User.id > after_id, PRESENT).order_by(User.id).limit(limit)
        return list(await self.session.scalars(query))

    async def add(self, *, email: str, name: str) -> User:
        user = User(email=email, name=name)
        self.session.add(user)
        await self.session.flush()
        return user

    async def erase(self, user: User) -> None:
        """Drop the user's email and name for good; ``user`` was read locked (``get(...,
        for_update=True)``). Its orders stay, under its id."""
        # The answer kept for a retried POST /users holds the email and name as well.
        await idempotency.forget(self.session, {"id": user.id, "email": user.email})
        await self.update(user, {"email": None, "name": None, "erased_at": func.now()})

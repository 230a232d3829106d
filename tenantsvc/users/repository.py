from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantsvc.users.models import User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def exists(self, user_id: int) -> bool:
        found = await self.session.scalar(select(User.id).where(User.id == user_id))
        return found is not None

    async def get_by_email(self, email: str) -> User | None:
        found: User | None = await self.session.scalar(select(User).where(User.email == email))
        return found

    async def page(self, after_id: int, limit: int) -> list[User]:
        query = select(User).where(User.id > after_id).order_by(User.id).limit(limit)
        return list(await self.session.scalars(query))

    async def add(self, *, email: str, name: str) -> User:
        user = User(email=email, name=name)
        self.session.add(user)
        await self.session.flush()
        return user

"""What every repository shares: the unit of work's session, and applying a PATCH's changes."""

from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

Row = TypeVar("Row")


class Repository:
    """Repositories only add and flush; the unit of work commits (``uow.py``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def update(self, row: Row, changes: dict[str, Any]) -> Row:
        """``changes`` set on ``row`` and flushed, so constraints answer now."""
        for name, value in changes.items():
            setattr(row, name, value)
        await self.session.flush()
        return row

"""users.erased_at: a user erased on request keeps its id (its orders stay, for the books) and
loses its email and name

Revision ID: t0004
Revises: t0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0004"
down_revision: str | None = "t0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "(erased_at IS NULL) = (email IS NOT NULL AND name IS NOT NULL)"


def upgrade() -> None:
    # Nullable, no default, and dropping NOT NULL: no table rewrite. The check reads the rows
    # once, under the lock the migration holds anyway.
    op.add_column("users", sa.Column("erased_at", sa.DateTime(timezone=True)))
    op.alter_column("users", "email", nullable=True)
    op.alter_column("users", "name", nullable=True)
    op.create_check_constraint("users_erased_check", "users", CHECK)


def downgrade() -> None:
    # An erased user has no email or name to give back to the NOT NULL columns.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT FROM users WHERE erased_at IS NOT NULL) THEN "
        "RAISE EXCEPTION 'erased users exist: t0004 cannot be undone'; END IF; END $$"
    )
    op.drop_constraint("users_erased_check", "users", type_="check")
    op.alter_column("users", "name", nullable=False)
    op.alter_column("users", "email", nullable=False)
    op.drop_column("users", "erased_at")

"""users: an email is unique whatever its case (Ann@x.io and ann@x.io are one person)

Revision ID: t0005
Revises: t0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0005"
down_revision: str | None = "t0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Users registered before this revision may differ only in case: the index cannot be
    # built over them, and which of them is the person is for the tenant to say. Refuse, naming
    # them, and leave this tenant where it is; the rest of the fleet migrates.
    op.execute(
        "DO $$ DECLARE twins text; BEGIN "
        "SELECT string_agg(ids, '; ') INTO twins FROM (SELECT string_agg(id::text, ', ' "
        "ORDER BY id) AS ids FROM users WHERE email IS NOT NULL GROUP BY lower(email) "
        "HAVING count(*) > 1) AS shared; "
        "IF twins IS NOT NULL THEN RAISE EXCEPTION "
        "'users % share an email in different case: change or erase all but one, then "
        "migrate again', twins; END IF; END $$"
    )
    op.create_index("users_email_lower_key", "users", [sa.text("lower(email)")], unique=True)
    # The case-sensitive constraint is now implied, and each insert maintained its index.
    op.drop_constraint("users_email_key", "users", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint("users_email_key", "users", ["email"])
    op.drop_index("users_email_lower_key", table_name="users")

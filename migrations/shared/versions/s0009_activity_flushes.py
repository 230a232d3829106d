"""registry: the activity flushes that committed, so a retried flush is not counted twice

Revision ID: s0009
Revises: s0008
Create Date: 2026-11-26

A worker whose flush failed while committing cannot know whether the commit went through (the
connection died before the answer came back). Each flush writes its id here in the same
transaction; the retry looks its id up and writes the requests only if it is absent. Rows
older than a week are pruned by the flushes themselves.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "s0009"
down_revision: str | None = "s0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity_flushes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "flushed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="tenantsvc",
    )
    op.create_index("activity_flushes_flushed_at_idx", "activity_flushes", ["flushed_at"],
                    schema="tenantsvc")  # fmt: skip


def downgrade() -> None:
    op.drop_table("activity_flushes", schema="tenantsvc")

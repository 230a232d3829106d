"""idempotency_keys: the answers of requests sent with an Idempotency-Key

Revision ID: t0002
Revises: t0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0002"
down_revision: str | None = "t0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.SmallInteger),
        sa.Column("response", sa.LargeBinary),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("idempotency_keys_created_at_idx", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")

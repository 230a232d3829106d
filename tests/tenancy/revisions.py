"""A tenant-track revision made on the fly, chained onto the repository's head: the
repository's own migrations stay untouched."""

from pathlib import Path

import pytest

from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head

SKU_REVISION = '''"""products.sku and its index"""
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("sku", sa.String(64), nullable=True))
    op.create_index("products_sku_idx", "products", ["sku"])


def downgrade() -> None:
    op.drop_index("products_sku_idx", table_name="products")
    op.drop_column("products", "sku")
'''


def write_sku_revision(directory: Path, revision: str) -> str:
    """Writes the revision (chained onto the current head) into ``directory``; returns the
    head it chains onto. Also used by the benchmark's W2."""
    old = head("tenant")
    (directory / f"{revision}_products_sku.py").write_text(
        SKU_REVISION.format(revision=revision, down=old)
    )
    return old


def add_sku_revision(directory: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Writes the revision and makes it the tenant track's head; returns (old, new) head."""
    new = "x9001"
    old = write_sku_revision(directory, new)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(directory))
    assert head("tenant") == new
    return old, new

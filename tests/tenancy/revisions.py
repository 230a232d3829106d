"""A tenant-track revision made on the fly, chained onto the repository's head: the
repository's own migrations stay untouched. And the shared track taken back a revision."""

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection

from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, alembic_config, head

REVISION = '''"""{doc}"""
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def write_revision(
    directory: Path, revision: str, down: str, doc: str, upgrade: str, downgrade: str = "pass"
) -> None:
    """A tenant-track revision file; ``upgrade`` and ``downgrade`` are statement lines."""
    body = REVISION.format(doc=doc, revision=revision, down=down,
                           upgrade=_indented(upgrade), downgrade=_indented(downgrade))  # fmt: skip
    (directory / f"{revision}.py").write_text(body)


def concurrently(statement: str) -> str:
    """``statement`` (an ``op.create_index``/``op.drop_index`` call, its closing parenthesis
    left off) built concurrently, in Alembic's ``autocommit_block()`` (tenancy/steps.py)."""
    return (
        f"with op.get_context().autocommit_block():\n    {statement}, postgresql_concurrently=True)"
    )


def _indented(lines: str) -> str:
    return "\n".join(f"    {line}" for line in lines.splitlines())


def write_sku_revision(directory: Path, revision: str) -> str:
    """Writes the revision (chained onto the current head) into ``directory``; returns the
    head it chains onto. Also used by the benchmark's W2."""
    old = head("tenant")
    upgrade = ('op.add_column("products", sa.Column("sku", sa.String(64), nullable=True))\n'
               'op.create_index("products_sku_idx", "products", ["sku"])')  # fmt: skip
    downgrade = ('op.drop_index("products_sku_idx", table_name="products")\n'
                 'op.drop_column("products", "sku")')  # fmt: skip
    write_revision(directory, revision, old, "products.sku and its index", upgrade, downgrade)
    return old


def add_sku_revision(directory: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Writes the revision and makes it the tenant track's head; returns (old, new) head."""
    new = "x9001"
    old = write_sku_revision(directory, new)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(directory))
    assert head("tenant") == new
    return old, new


def shared_down_to(connection: Connection, target: str) -> None:
    """For ``run_sync``: the shared track downgraded to ``target`` on this connection."""
    config = alembic_config("shared")
    config.attributes["connection"] = connection
    command.downgrade(config, target)

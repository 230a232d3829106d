"""Revisions that build or drop an index ``CONCURRENTLY``, and how a tenant migrates through them.

A plain ``CREATE INDEX`` blocks the tenant's writes to that table while it builds: minutes on a
big tenant. ``CREATE INDEX CONCURRENTLY`` does not, but PostgreSQL refuses it inside a
transaction, and every other tenant migration is one transaction (all or nothing). So a script
is cut into steps at its revisions: runs of ordinary revisions stay one transaction each, and a
revision made only of concurrent index statements (in Alembic's ``autocommit_block()``, which
commits whatever ran before it, as Alembic's documentation warns) runs statement by statement
outside one, its revision recorded once every index is built.

Such a step can stop half way (a failed unique build, a killed process) and must resume, so
each statement is made safe to run again: an index already built is not built again, the
invalid index a failed build leaves behind is dropped before the next attempt, and an index
already dropped is not dropped again. Mixing concurrent and ordinary statements in one revision
is refused: the ordinary ones would commit before the index and could not be re-run.

A schema built from scratch (provisioning, the drift reference) has no rows and no traffic:
there the same statements run without ``CONCURRENTLY``, inside the build's one transaction.
"""

import re
from dataclasses import dataclass
from typing import Any

from tenantsvc.tenancy.ddl import identifier
from tenantsvc.tenancy.errors import MigrationError

# Statements PostgreSQL refuses inside a transaction block, as Alembic renders them (its
# ``autocommit_block()`` renders nothing in a script without transactions).
NON_TRANSACTIONAL = re.compile(r"\b(?:CREATE|DROP|REINDEX)\b[^;]*\bCONCURRENTLY\b", re.I)
_CONCURRENTLY = re.compile(
    r"\b((?:CREATE(?:\s+UNIQUE)?\s+INDEX|DROP\s+INDEX)\s+)CONCURRENTLY\s+", re.I
)
_NAME = r'("(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_CREATE = re.compile(
    rf"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}\s+ON\b", re.I
)
_DROP = re.compile(rf"^DROP\s+INDEX\s+CONCURRENTLY\s+(?:IF\s+EXISTS\s+)?{_NAME}\s*$", re.I)
_MARKER = re.compile(r"^-- Running (upgrade|downgrade) (\S*) -> (\S*)[ \t]*$", re.M)
_VERSION_ROW = re.compile(r"^(?:INSERT INTO|UPDATE|DELETE FROM) alembic_version\b")


@dataclass(frozen=True, slots=True)
class IndexStatement:
    sql: str
    index: str  # as stored in pg_class
    creates: bool  # else drops


@dataclass(frozen=True, slots=True)
class Step:
    """``indexes`` one by one outside a transaction, then ``sql`` in one (a concurrent step's
    is its alembic_version row), with the tenant's revision record."""

    sql: str
    target: str | None  # the revision the tenant is at after it
    indexes: tuple[IndexStatement, ...] = ()


def concurrent(steps: tuple[Step, ...] | None) -> bool:
    return any(step.indexes for step in steps or ())


def fresh_build(script: str) -> str:
    """``script`` for a schema being built from scratch: its indexes built in its transaction."""
    return _CONCURRENTLY.sub(r"\1", script)


def split(script: str) -> list[Step]:
    """``script`` (Alembic's offline rendering) as steps; ordinary revisions in a row share
    one."""
    steps: list[Step] = []
    for revision, body, target in _revisions(script):
        if NON_TRANSACTIONAL.search(body):
            steps.append(_concurrent_step(revision, body, target))
        elif steps and not steps[-1].indexes:
            steps[-1] = Step(steps[-1].sql + body, target)
        else:
            steps.append(Step(body, target))
    return steps


def _revisions(script: str) -> list[tuple[str, str, str | None]]:
    """(revision, its SQL, the revision after it); what precedes the first marker (creating
    alembic_version) goes with the first revision."""
    markers = list(_MARKER.finditer(script))
    found = []
    for i, marker in enumerate(markers):
        start = 0 if i == 0 else marker.start()
        end = markers[i + 1].start() if i + 1 < len(markers) else len(script)
        kind, down, up = marker.groups()
        found.append((up if kind == "upgrade" else down, script[start:end], up or None))
    return found


def _concurrent_step(revision: str, body: str, target: str | None) -> Step:
    indexes, version = [], []
    for statement in _statements(body):
        if _VERSION_ROW.match(statement):
            version.append(statement + ";\n")
        elif index := _index_statement(statement):
            indexes.append(index)
        else:
            raise MigrationError(
                f"revision {revision}: {statement.splitlines()[0]!r} shares a revision with "
                "CREATE/DROP INDEX CONCURRENTLY, which runs outside the tenant's transaction; "
                "move the concurrent index statements into a revision of their own"
            )
    return Step("".join(version), target, tuple(indexes))


def _statements(body: str) -> list[str]:
    lines = [line for line in body.splitlines() if not line.startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip()]


def _index_statement(statement: str) -> IndexStatement | None:
    for pattern, creates in ((_CREATE, True), (_DROP, False)):
        if found := pattern.match(statement):
            name = found.group(1)
            stored = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
            return IndexStatement(statement, stored, creates)
    return None


_INDEX_STATE = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2"
)


async def run_index(driver: Any, schema: str, index: IndexStatement) -> None:
    """One concurrent statement on an asyncpg connection outside a transaction, whose
    search_path is the tenant's; safe to run again after any failure."""
    valid = await driver.fetchval(_INDEX_STATE, schema, index.index)
    if index.creates and valid:
        return  # built by an earlier attempt of this step
    if not index.creates and valid is None:
        return  # dropped by an earlier attempt
    if index.creates and valid is False:
        await _drop_invalid(driver, schema, index)  # what a failed or killed build left
    try:
        await driver.execute(index.sql)
    except Exception:
        if index.creates and await driver.fetchval(_INDEX_STATE, schema, index.index) is False:
            await _drop_invalid(driver, schema, index)  # an invalid index still slows writes
        raise


async def _drop_invalid(driver: Any, schema: str, index: IndexStatement) -> None:
    await driver.execute(
        f"DROP INDEX CONCURRENTLY IF EXISTS {identifier(schema)}.{identifier(index.index)}"
    )

"""Reading database errors through the layers that wrap them."""

from collections.abc import Iterator

# The database rolled the transaction back on its own and asks for it to be run again
# (PostgreSQL's "Serialization Failure Handling"): a serialization failure, a deadlock.
SERIALIZATION_FAILURE, DEADLOCK = "40001", "40P01"
RUN_AGAIN = (SERIALIZATION_FAILURE, DEADLOCK)
UNDEFINED_TABLE, UNDEFINED_COLUMN = "42P01", "42703"
# What a write to a database that takes none says (a standby, default_transaction_read_only).
READ_ONLY_SQL_TRANSACTION = "25006"
# What ``SET ROLE`` to a role that does not exist says: invalid_parameter_value.
ROLE_MISSING = "22023"
# What a replica that has not replayed a tenant's latest DDL yet answers: a tenant just created
# or restored (no table, schema or role yet), a column or function a migration just added.
NOT_YET_REPLAYED = (UNDEFINED_TABLE, UNDEFINED_COLUMN, "42883", "42704", "3F000", ROLE_MISSING)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps, down the chain: SQLAlchemy keeps the driver's error in
    ``orig``, and the driver adapter raises its own error ``from`` asyncpg's."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = getattr(seen, "orig", None) or seen.__cause__


def sqlstate(exc: BaseException) -> str:
    """The first SQLSTATE down the chain ("" when none says)."""
    for cause in causes(exc):
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""

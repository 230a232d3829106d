"""Database URLs as settings: the spellings platforms hand out are taken, anything else is
refused when the settings are read, and a refusal never shows the password."""

import pytest
from pydantic import ValidationError

from tenantsvc.settings import Settings


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?sslmode=require"),
        ("postgresql+asyncpg:///app?host=/run/pg", "postgresql+asyncpg:///app?host=/run/pg"),
        (" postgresql+asyncpg://u@db/app ", "postgresql+asyncpg://u@db/app"),
        ("postgresql:///app", "postgresql+asyncpg:///app"),  # libpq's defaults: the local socket
    ],
)
def test_postgres_urls_are_taken_for_asyncpg(given: str, used: str) -> None:
    settings = Settings(database_url=given, read_database_url=f"{given}, {given}")
    assert settings.database_url == used
    assert settings.replica_urls == [used, used]


@pytest.mark.parametrize(
    "given", ["notaurl", "mysql://u:p@db/app", "postgresql+psycopg2://u:p@db/app", "postgres:db"]
)
def test_other_urls_are_refused_without_their_password(given: str) -> None:
    for field in ("database_url", "read_database_url"):
        with pytest.raises(ValidationError, match="use postgresql\\+asyncpg://") as refused:
            Settings.model_validate({field: given})
        assert ":p@" not in str(refused.value)


def test_a_log_level_is_taken_in_any_case_and_checked_when_read() -> None:
    """``debug`` failed every worker's start with a traceback from the logging setup, and a
    level logging does not know the same way, while tenantctl's other commands took it."""
    assert Settings(log_level="debug").log_level == "DEBUG"
    assert Settings(log_level="Warning").log_level == "WARNING"
    for unknown in ("LOUD", "WARN", ""):
        with pytest.raises(ValidationError, match="use one of DEBUG, INFO, WARNING"):
            Settings(log_level=unknown)


@pytest.mark.parametrize(
    "name",
    ["statement_timeout_ms", "idle_in_transaction_timeout_ms", "migration_lock_timeout_ms",
     "migration_statement_timeout_ms"],
)  # fmt: skip
def test_a_timeout_past_postgresqls_range_is_refused_when_read(name: str) -> None:
    """3,000,000,000 ms passed, and every connection (or migration) then failed on the
    server's "invalid value for parameter", a traceback in migrate."""
    assert getattr(Settings.model_validate({name: 2**31 - 1}), name) == 2**31 - 1
    with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
        Settings.model_validate({name: 2**31})

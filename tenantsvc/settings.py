"""One typed settings object, read from ``TENANTSVC_*`` environment variables.

Every knob of the engine and pool is a named setting with the design notes' defaults, so that
the pool can be sized (and checked by ``tenantctl doctor``) against the server's
``max_connections`` without reading code.
"""

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What a PostgreSQL URL may start with; the service's engines all use asyncpg.
_DRIVER = "postgresql+asyncpg"
_POSTGRES_SCHEMES = {_DRIVER, "postgresql", "postgres"}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PG_INT_MAX = 2**31 - 1  # the top of PostgreSQL's millisecond settings (about 24.8 days)


def asyncpg_url(url: str) -> str:
    """``url`` for asyncpg: ``postgresql://`` and ``postgres://`` (as most platforms hand them
    out) are taken as ``postgresql+asyncpg://``; anything else that is not a PostgreSQL URL is
    refused here, as a setting, instead of failing deep inside the engine."""
    url = url.strip()
    scheme, colon, rest = url.partition(":")
    if scheme not in _POSTGRES_SCHEMES or not rest.startswith("//"):
        raise ValueError("use postgresql+asyncpg://user:password@host:port/database")
    return f"{_DRIVER}{colon}{rest}"


# What a browser sends as Origin: a scheme and a host, a port perhaps, and nothing after.
_ORIGIN = re.compile(r"https?://[^/\s:,]+(:\d{1,5})?")


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in (values or "").split(",") if v.strip()]


class Settings(BaseSettings):
    # Inputs stay out of the error text: a URL holds a password, and a traceback is logged.
    model_config = SettingsConfigDict(
        env_prefix="TENANTSVC_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+asyncpg://...). Unset: an embedded PostgreSQL.",
    )
    read_database_url: str | None = Field(
        default=None,
        description="Read replicas: one URL or several separated by commas. Unset: none.",
    )
    replica_max_lag_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    replica_wait_ms: int = Field(
        default=50, ge=0, description="How long a read with a token waits for a replica."
    )
    replica_check_seconds: float = Field(default=0.5, gt=0)
    embedded_data_dir: Path = Path(".tenantsvc/pgdata")

    pool_size: PositiveInt = 20
    max_overflow: int = Field(default=10, ge=0)
    pool_timeout_seconds: float = Field(default=30.0, gt=0)
    pool_recycle_seconds: int = 3600
    pool_pre_ping: bool = True
    pool_affinity: bool = Field(
        default=True,
        description="Each tenant prefers one connection of the pool, its home, so the "
        "server's per-connection caches stay warm (db/affinity.py).",
    )
    pool_home_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="How long a checkout waits for its busy home connection when no idle one "
        "has served the tenant before taking a cold one (db/affinity.py); 0: never wait.",
    )
    tenant_max_connections: int | None = Field(
        default=None,
        ge=0,
        description="Transactions one tenant may have in progress at once per worker; its "
        "requests beyond wait in its own queue (db/fairness.py), so the rest of the pool stays "
        "for the other tenants. Unset: three quarters of POOL_SIZE + MAX_OVERFLOW. 0: no cap.",
    )
    workers: PositiveInt = 1

    pgbouncer: bool = Field(
        default=False,
        description="Behind PgBouncer in transaction mode: no server-side statement caches.",
    )
    statement_timeout_ms: int = Field(default=30_000, ge=0, le=_PG_INT_MAX)
    idle_in_transaction_timeout_ms: int = Field(
        default=60_000,
        ge=0,
        le=_PG_INT_MAX,
        description="The server ends a session whose transaction sits idle this long, and "
        "with it the row locks it holds: a worker stalled mid-transaction (a blocked event "
        "loop, a hung process) would otherwise hold every order for the products it locked. "
        "The service's own transactions idle for milliseconds. 0: none.",
    )
    statement_cache_size: int = Field(
        default=4096,
        ge=0,
        description="Prepared statements kept per connection (asyncpg). The hot paths give "
        "each tenant its own statements while they fit (db/statements.py): 4096 holds 1,023 "
        "tenants' plans per connection, room for the 530-590 home tenants each of a worker's "
        "17-19 busy connections gets in a fleet of 10,000, and for tenants it serves while "
        "their home is busy (2048 held 511: the rest re-planned on every call). Each plan "
        "takes about 20 KB of server memory: at most 80 MB per connection, reached only when "
        "1,023 tenants each use all four hot statements on it. Ignored behind PgBouncer.",
    )

    migration_lock_timeout_ms: int = Field(
        default=1000,
        ge=0,
        le=_PG_INT_MAX,
        description="How long a migration (a tenant's, the shared track's) waits for a table's "
        "lock before it rolls back and tries again; queries queue behind a waiting ALTER, so "
        "this bounds how long a migration can stall them (tenancy/locking.py). 0: no limit.",
    )
    migration_lock_retries: int = Field(
        default=5, ge=0, description="Retries of a migration that timed out on a lock."
    )
    migration_statement_timeout_ms: int = Field(
        default=0,
        ge=0,
        le=_PG_INT_MAX,
        description="Per-statement limit inside migrations, apart from the requests' "
        "statement_timeout (an index over a big tenant may take minutes). 0: none.",
    )

    max_body_bytes: PositiveInt = Field(
        default=8 * 1024 * 1024,
        description="Larger request bodies are refused with 413 (a 10,000-product bulk "
        "import is about 1-3 MB).",
    )

    head_timeout_seconds: PositiveFloat = Field(
        default=20.0,
        description="A request whose line and headers have not all arrived this long after "
        "they began gets 408 and is closed; a connection that sent nothing that long is "
        "closed (slowloris).",
    )

    body_timeout_seconds: PositiveFloat = Field(
        default=60.0,
        description="A request whose body has not all arrived this long after its headers "
        "gets 408 and is closed (a body trickled a byte at a time).",
    )

    keep_alive_seconds: PositiveInt = Field(
        default=5,
        description="How long an idle kept-alive connection stays open (uvicorn's "
        "timeout_keep_alive). Behind a load balancer, set it above the balancer's idle timeout "
        "(AWS ALB: 60 s), or the balancer sends requests on connections being closed (502s).",
    )

    shutdown_timeout_seconds: PositiveInt = Field(
        default=20,
        description="On SIGTERM, how long a worker waits for the requests it holds before it "
        "cancels them (rolled back) and shuts down: its last usage flush still runs. Keep it "
        "below the deploy's grace period (Kubernetes: 30 s) less 10 s for that flush.",
    )

    cors_origins: str | None = Field(
        default=None,
        description="Browser origins allowed to call the API (https://app.example.com), "
        "comma-separated, or *. Unset: no CORS headers, and browsers on other origins are "
        "refused by the browser itself.",
    )

    metrics_token: SecretStr | None = Field(
        default=None,
        description="The bearer token a scraper sends for /metrics (Prometheus: "
        "`authorization: {credentials: ...}`). Unset or empty: /metrics is off. Its tenant "
        "labels name the customers a worker served and how busy each is, which no client of "
        "the API may read, and the API's port is the one clients reach.",
    )
    metrics_max_tenant_labels: int = Field(
        default=100,
        ge=0,
        description="Tenants with their own metrics label per worker; the rest count as _other.",
    )
    metrics_sample_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each worker records its pools' gauges, so a scrape answered by "
        "any worker reports every worker's pools as they are (observability/metrics.py).",
    )
    log_level: str = Field(
        default="INFO",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL, in any case.",
    )

    gc_young_threshold: int = Field(
        default=10_000,
        ge=0,
        description="The garbage collector's young-generation threshold in each worker "
        "(Python's is 700; 0 leaves it alone). See tenantsvc/collector.py.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Freeze the objects alive once the app has started, so full collections "
        "skip them (tenantsvc/collector.py).",
    )

    registry_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each worker checks the registry version; bounds how long a "
        "suspended or revoked tenant can still be served.",
    )
    tenant_roles: bool = Field(
        default=True,
        description="New tenants get their own database role, which may use only their schema; "
        "their transactions run as it (tenancy/roles.py). Needs CREATEROLE. `tenantctl isolate` "
        "gives existing tenants one.",
    )
    usage_flush_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often each worker writes what it served: when each API key was last "
        "used (`tenantctl keys list`, exact to within this) and each tenant's requests per day "
        "(`tenantctl usage`, `tenantctl requests`); tenancy/activity.py.",
    )

    actor: str | None = Field(
        default=None,
        max_length=50,
        pattern=r"^[ -~]+$",  # PostgreSQL turns other characters of an application_name to ?
        description="Who tenantctl says is acting, in the registry's audit trail (`tenantctl "
        "history`): a person, or a pipeline and its run. Unset: the OS user @ host.",
    )

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, url: str | None) -> str | None:
        return None if url is None else asyncpg_url(url)

    @field_validator("read_database_url")
    @classmethod
    def _asyncpg_urls(cls, urls: str | None) -> str | None:
        if urls is None:
            return None
        return ",".join(asyncpg_url(u) for u in _split(urls))

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _token_or_none(cls, token: object) -> object:
        if token == "":  # compose's ${TENANTSVC_METRICS_TOKEN:-}
            return None
        if isinstance(token, str) and len(token) < 16:
            raise ValueError("use a token of at least 16 characters")
        return token

    @field_validator("log_level")
    @classmethod
    def _level(cls, level: str) -> str:
        """``debug`` as well as ``DEBUG``: a level logging does not know failed every worker's
        start with a traceback."""
        if level.upper() not in _LEVELS:
            raise ValueError(f"use one of {', '.join(_LEVELS)}")
        return level.upper()

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: str | None) -> str | None:
        for origin in _split(origins):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], or *")
        return origins

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    @property
    def replica_urls(self) -> list[str]:
        return _split(self.read_database_url)

    @property
    def max_connections_per_worker(self) -> int:
        return self.pool_size + self.max_overflow

    @property
    def tenant_connection_cap(self) -> int:
        if self.tenant_max_connections is not None:
            return self.tenant_max_connections
        return max(1, self.max_connections_per_worker * 3 // 4)


@lru_cache
def get_settings() -> Settings:
    return Settings()

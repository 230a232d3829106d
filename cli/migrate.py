"""Migration commands: one tenant, the whole fleet (shared track first), and fleet status."""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.common import JsonOpt, engine_for_cli, fail, print_json, print_table, run
from cli.completion import Slug
from tenantsvc.wording import counted

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tenantsvc.tenancy.fleet import Summary
    from tenantsvc.tenancy.tenant_migration import TenantOutcome

app = typer.Typer()

ToOpt = Annotated[str, typer.Option("--to", help="Target revision (head, base, an id).")]
LockTimeoutOpt = Annotated[
    int | None,
    typer.Option(
        "--lock-timeout-ms",
        min=0,
        max=2**31 - 1,  # PostgreSQL's top for lock_timeout
        help="How long a migration (the shared track's, each tenant's) waits for a table "
        "lock before it rolls back and retries (default: TENANTSVC_MIGRATION_LOCK_TIMEOUT_MS; "
        "0: no limit).",
    ),
]
LockRetriesOpt = Annotated[
    int | None,
    typer.Option(
        "--lock-retries",
        min=0,
        help="Retries after a lock timeout (default: TENANTSVC_MIGRATION_LOCK_RETRIES).",
    ),
]


def _outcome_json(o: "TenantOutcome") -> dict[str, Any]:
    return {"slug": o.slug, "schema": o.schema, "before": o.before, "after": o.after,
            "seconds": round(o.seconds, 4), "error": o.error, "skipped": o.skipped,
            "attempts": o.attempts}  # fmt: skip


def _summary_json(s: "Summary") -> dict[str, Any]:
    return {"target": s.target, "total": s.total, "migrated": s.migrated,
            "skipped": s.skipped, "failed": len(s.failures),
            "lock_retries": s.lock_retries, "later": s.later}  # fmt: skip


class JsonStream:
    """Writes ``{"tenants": [...], "summary": {...}}`` as outcomes arrive: nothing per
    tenant is held in memory, however large the fleet."""

    def __init__(self) -> None:
        self.count = 0
        sys.stdout.write('{"tenants": [')

    def add(self, outcome: "TenantOutcome") -> None:
        import json

        sys.stdout.write(("," if self.count else "") + "\n  " + json.dumps(_outcome_json(outcome)))
        self.count += 1

    def close(self, summary: "Summary") -> None:
        import json

        sys.stdout.write(f'\n], "summary": {json.dumps(_summary_json(summary))}}}\n')

    def abort(self, migrated: int, behind: int) -> None:
        """The document closed with ``aborted`` in place of ``summary`` (Ctrl-C, the database
        lost): a run cut short still prints JSON that parses, with what it did."""
        sys.stdout.write(f'\n], "aborted": {{"migrated": {migrated}, "behind": {behind}}}}}\n')


@app.command()
def migrate(
    slug: Slug,
    to: ToOpt = "head",
    lock_timeout_ms: LockTimeoutOpt = None,
    lock_retries: LockRetriesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Migrate one tenant's schema (the shared track first)."""
    _migrate(to, [slug], [], None, False, as_json, lock=(lock_timeout_ms, lock_retries))


@app.command("migrate-all")
def migrate_all(
    to: ToOpt = "head",
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Connections used at once (default: from the pool).")
    ] = None,
    tenant: Annotated[list[str], typer.Option("--tenant", help="Only these tenants.")] = [],  # noqa: B006
    status: Annotated[list[str], typer.Option("--status", help="Only these statuses.")] = [],  # noqa: B006
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failing tenant.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Only the first N tenants behind (slug order); rerun for more."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="List what would run; change nothing.")] = False,
    sql: Annotated[bool, typer.Option("--sql", help="Print one tenant's SQL instead.")] = False,
    metrics_file: Annotated[
        str | None, typer.Option(help="Write outcome metrics here (Prometheus textfile format).")
    ] = None,
    lock_timeout_ms: LockTimeoutOpt = None,
    lock_retries: LockRetriesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Migrate the shared track, then every tenant behind the target; a re-run resumes.

    Tenants are migrated concurrently, each in its own transaction. Exits non-zero if any
    tenant failed."""
    if sql:
        _print_sql(to, tenant)
    elif dry_run:
        _dry_run(to, tenant, status, limit, as_json)
    else:
        lock = (lock_timeout_ms, lock_retries)
        _migrate(to, tenant, status, concurrency, fail_fast, as_json, metrics_file, lock, limit)


async def _connections(engine: "AsyncEngine", workers: int, given: bool) -> int:
    """The default concurrency shrinks to what the server has free; a --concurrency past it
    is refused before any tenant runs, where it failed tenants on "too many clients"."""
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy import fleet

    if get_settings().pgbouncer:  # PgBouncer queues clients past its server connections
        return workers
    free = await fleet.free_connections(engine)
    if given and workers > free:
        raise fail(f"--concurrency {workers}: the server has {free} connections free; "
                   f"use {free} or fewer, or raise max_connections")  # fmt: skip
    return min(workers, free)


def _migrate(
    to: str,
    slugs: list[str],
    statuses: list[str],
    concurrency: int | None,
    fail_fast: bool,
    as_json: bool,
    metrics_file: str | None = None,
    lock: tuple[int | None, int | None] = (None, None),
    limit: int | None = None,
) -> None:
    from tenantsvc.settings import get_settings
    from tenantsvc.tenancy import fleet
    from tenantsvc.tenancy.locking import LockPolicy

    settings = get_settings()
    workers = concurrency or fleet.default_concurrency(settings.pool_size)
    policy = LockPolicy.from_settings(settings, lock_timeout_ms=lock[0], retries=lock[1])
    if metrics_file and not (folder := Path(metrics_file).absolute().parent).is_dir():
        raise fail(f"--metrics-file {metrics_file}: {folder} is not a directory")

    report = _Reporter(as_json)

    async def work() -> "Summary":
        fleet.checked(to, statuses)  # a bad --to or --status fails before the shared track runs
        async with engine_for_cli(pool_size=workers) as engine:
            await fleet.migrate_shared(engine, policy)
            the_plan = await fleet.plan(engine, to, slugs, statuses, limit)
            busy = min(workers, len(the_plan.behind))  # more would find no tenant to take
            connections = await _connections(engine, busy, given=concurrency is not None)
            if the_plan.concurrent and settings.pgbouncer:
                raise fail(
                    "a revision builds an index concurrently, which holds a session (its lock "
                    "and search_path) that PgBouncer's transaction pooling would hand to other "
                    "clients: run migrations against PostgreSQL directly, without "
                    "TENANTSVC_PGBOUNCER"
                )
            with report.over(len(the_plan.behind)):
                summary = await fleet.run_plan(
                    engine, the_plan, connections, fail_fast=fail_fast, on_done=report,
                    policy=policy,
                )  # fmt: skip
            if as_json:
                report.close(summary)
            return summary

    started = time.perf_counter()
    summary = run(work, report.left_undone)
    seconds = time.perf_counter() - started
    if not as_json:
        typer.echo(
            f"{counted(summary.total, 'tenant')}: {summary.migrated} migrated to "
            f"{summary.target or 'base'}, "
            f"{summary.skipped} already there, {len(summary.failures)} failed"
            + (f" ({summary.lock_retries} retried after waiting for locks)"
               if summary.lock_retries else "")
            + (f"; {summary.later} more behind, left for the next run (--limit)"
               if summary.later else "")
        )  # fmt: skip
    for failure in summary.failures:
        typer.echo(f"failed: {failure.slug}: {failure.error}", err=True)
    if metrics_file:
        _write_outcomes(metrics_file, summary, seconds)
    if summary.failures:
        raise typer.Exit(1)


def _write_outcomes(path: str, summary: "Summary", seconds: float) -> None:
    """After the run: a file that cannot be written is one line and exit 1 (the collector
    would miss the run), where it was a traceback after a run that had gone well."""
    from tenantsvc.observability.metrics import write_migration_outcomes

    try:
        write_migration_outcomes(path, summary, seconds)
    except OSError as exc:
        raise fail(
            f"--metrics-file {path}: {exc.strerror}; the run itself is done ({summary.migrated} "
            "migrated), only its outcome is not in the file"
        ) from None


class _Reporter:
    """Each tenant's outcome as it comes: a progress bar on a terminal, or the JSON stream; and
    what an interrupt leaves undone."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.stream: JsonStream | None = None
        self.progress: Any = None
        self.total: int | None = None  # the tenants behind, once planned
        self.migrated = 0

    @contextmanager
    def over(self, total: int) -> Iterator["_Reporter"]:
        self.total = total
        self.stream = JsonStream() if self.as_json else None
        if not self.as_json and sys.stdout.isatty() and total:
            from rich.progress import Progress

            self.progress = Progress()
            self.task = self.progress.add_task("migrating", total=total)
            self.progress.start()
        try:
            yield self
        except BaseException:
            if self.stream is not None:
                self.stream.abort(self.migrated, total)
            raise
        finally:
            if self.progress is not None:
                self.progress.stop()

    def __call__(self, outcome: "TenantOutcome") -> None:
        if outcome.error is None and not outcome.skipped:
            self.migrated += 1
        if self.stream is not None:
            self.stream.add(outcome)
        if self.progress is not None:
            self.progress.advance(self.task)

    def left_undone(self) -> str:
        """Said after "interrupted": each tenant commits on its own, so the ones done stay
        done, and a re-run takes up the others."""
        if self.total is None:
            return ": no tenant was migrated"
        return (f"; {self.migrated} of {counted(self.total, 'tenant')} behind were migrated "
                "(and any in flight that had just committed), the others are where they "
                "were: run `tenantctl migrate-all` again to resume")  # fmt: skip

    def close(self, summary: "Summary") -> None:
        if self.stream is not None:
            self.stream.close(summary)


def _dry_run(
    to: str, slugs: list[str], statuses: list[str], limit: int | None, as_json: bool
) -> None:
    from tenantsvc.tenancy import fleet

    async def work() -> None:
        async with engine_for_cli() as engine:
            the_plan = await fleet.plan(engine, to, slugs, statuses, limit)
        rows = [{"slug": t.slug, "schema": t.schema, "before": rev, "after": the_plan.target}
                for t, rev in the_plan.behind]  # fmt: skip
        if as_json:
            print_json({"target": the_plan.target, "total": the_plan.total,
                        "concurrent": the_plan.concurrent, "later": the_plan.later,
                        "would_migrate": rows})  # fmt: skip
            return
        for row in rows:
            typer.echo(f"{row['slug']}: {row['before']} -> {row['after']}")
        typer.echo(f"{len(rows)} of {counted(the_plan.total, 'tenant')} would migrate to "
                   f"{the_plan.target}"
                   + (f"; {the_plan.later} more behind, left by --limit" if the_plan.later
                      else ""))  # fmt: skip
        if the_plan.concurrent:
            typer.echo("(an index is built concurrently: a step of its own, outside each "
                       "tenant's transaction, which does not block its writes)")  # fmt: skip

    run(work)


def _print_sql(to: str, slugs: list[str]) -> None:
    """One tenant's SQL as migrate-all runs it, step by step, for psql."""
    from tenantsvc.tenancy.admin import get_tenant
    from tenantsvc.tenancy.ddl import search_path_sql, session_search_path_sql
    from tenantsvc.tenancy.migrator import current_revision, resolve, tenant_steps

    if len(slugs) != 1:
        raise fail("--sql renders one tenant's SQL: give exactly one --tenant")

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            tenant = await get_tenant(conn, slugs[0])
            current = await conn.run_sync(current_revision, tenant.schema)
        for step in await tenant_steps(current, resolve("tenant", to)):
            if step.indexes:
                typer.echo("-- outside a transaction, one statement at a time:")
                typer.echo(session_search_path_sql(tenant.schema), nl=False)
                typer.echo("".join(f"{index.sql};\n" for index in step.indexes))
                typer.echo("RESET search_path;\n")
            typer.echo(f"BEGIN;\n{search_path_sql(tenant.schema)}\n{step.sql}COMMIT;\n")

    run(work)


@app.command("status")
def status_(as_json: JsonOpt = False) -> None:
    """Each tenant's revision against head, drift from a fresh build, stuck provisioning."""
    from tenantsvc.tenancy.status import fleet_status

    async def work() -> None:
        async with engine_for_cli() as engine, engine.connect() as conn:
            target, states = await fleet_status(conn)
        stuck = [s.slug for s in states if s.status == "provisioning"]
        if as_json:
            print_json({"head": target, "tenants": [s.as_json() for s in states],
                        "stuck_provisioning": stuck})  # fmt: skip
            return
        rows = ((s.slug, s.status, s.revision or "-", "yes" if s.at_head else "NO",
                 "-" if s.drift is None else ("DRIFT" if s.drift else "none"))
                for s in states)  # fmt: skip
        print_table(("slug", "status", "revision", "at head", "drift"), rows, empty="no tenants")
        typer.echo(f"head {target}; stuck in provisioning: {', '.join(stuck) or 'none'}")

    run(work)

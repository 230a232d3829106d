"""tenantctl's lifecycle, planning and health commands, each on a database of its own."""

import ast
import asyncio
import json
import os
import pty
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pgserver._commands import POSTGRES_BIN_PATH
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cli.psql import libpq_env
from tenantsvc.settings import Settings, get_settings
from tenantsvc.tenancy.doctor import metrics_check, pool_check, tenant_cap_check
from tenantsvc.tenancy.migrator import EXTRA_VERSIONS_ENV, head
from tenantsvc.tenancy.roles import role_prefix
from tenantsvc.testing.app import stop_app
from tests.cli.test_cli import tenantctl, use_database
from tests.command import TENANTCTL as TENANTCTL_COMMAND
from tests.conftest import make_settings, start_app
from tests.read_only import read_only_database
from tests.tenancy.revisions import add_sku_revision, concurrently, write_revision

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture
def fresh_cli(
    empty_database_url: str, fresh_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The CLI pointed at a database of this test's own."""
    use_database(monkeypatch, empty_database_url)
    yield empty_database_url
    get_settings.cache_clear()


def _scalar(url: str, sql: str) -> Any:
    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _api(url: str, calls: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``calls`` against a freshly started app (so its registry snapshot is current)."""

    async def go() -> T:
        manager, running = await start_app(make_settings(url))
        try:
            return await calls(running.client)
        finally:
            await stop_app(manager, running)

    return asyncio.run(go())


def test_archive_restore_keeps_every_row_and_purge_removes_all(fresh_cli: str) -> None:
    created = tenantctl("create", "keeper", "--json")
    headers = {"X-Tenant-ID": "keeper", "Authorization": f"Bearer {created['api_key']}"}
    items = [{"name": f"p{i}", "price_cents": i, "stock": 1} for i in range(250)]
    _api(fresh_cli, lambda c: c.post("/products/bulk", json={"items": items}, headers=headers))
    assert "error: not confirmed" in tenantctl("drop", "keeper", code=1).stderr
    archived = tenantctl("drop", "keeper", "--yes", "--json")
    assert archived["status"] == "archived"
    for migrating in (("migrate", "keeper"), ("migrate-all", "--tenant", "keeper")):
        refused = tenantctl(*migrating, code=1).stderr
        assert "is archived" in refused, refused
        assert "tenantctl restore keeper" in refused, refused
    gone = _api(fresh_cli, lambda c: c.get("/products", headers=headers))
    assert gone.status_code == 404
    assert _scalar(fresh_cli, "SELECT to_regnamespace('tenant_keeper')") is None
    moved = _scalar(fresh_cli, f"SELECT count(*) FROM {archived['archived_schema']}.products")
    assert moved == 250
    tenantctl("resume", "keeper", code=1)  # archived tenants are restored, not resumed
    taken = tenantctl("create", "keeper", code=1).stderr
    assert "archived: `tenantctl restore keeper` brings it back" in taken, taken
    listed = tenantctl("list", "--status", "archived").stdout
    assert archived["archived_schema"] in listed, listed  # where its rows are now
    assert tenantctl("restore", "keeper", "--json")["status"] == "active"
    back = _api(fresh_cli, lambda c: c.get("/products", params={"limit": 100}, headers=headers))
    assert back.status_code == 200
    assert back.json()["next_after_id"] == 100
    assert _scalar(fresh_cli, "SELECT count(*) FROM tenant_keeper.products") == 250
    tenantctl("drop", "keeper", "--purge", "--yes")
    assert _scalar(fresh_cli, "SELECT to_regnamespace('tenant_keeper')") is None
    assert _scalar(fresh_cli, "SELECT count(*) FROM tenantsvc.tenants") == 0
    tenantctl("create", "keeper")  # the slug is free again


def test_a_tenant_archived_before_the_fleet_moved_on_is_restored_at_head(fresh_cli: str) -> None:
    """`migrate-all` passes archived schemas by, so a tenant archived at an older revision came
    back active at it, served by code written for tables it did not have. It is migrated to
    head before it is served; when that fails it stays unserved, and says how to finish."""
    created = {slug: tenantctl("create", slug, "--json") for slug in ("late", "clash")}
    for slug in created:
        tenantctl("migrate", slug, "--to", "t0004")
    # t0005 makes an email unique whatever its case: two such users hold the migration back.
    _scalar(fresh_cli, "INSERT INTO tenant_clash.users (email, name) "
                       "VALUES ('Ann@x.io', 'A'), ('ann@x.io', 'B')")  # fmt: skip
    tenantctl("drop", "late", "clash", "--yes")
    tenantctl("migrate-all")  # the fleet at head: the archived two are not in it
    back = tenantctl("restore", "late")
    assert back.stdout == "tenant late: restored, migrated from t0004 to head\n"
    failed = tenantctl("restore", "clash", code=1).stderr
    held = "is back at t0004, but migrating it to head failed: users 1, 2 share an email"
    assert failed.startswith(f"error: tenant 'clash' {held}"), failed
    assert failed.endswith("`tenantctl migrate clash`, then `tenantctl resume clash`\n")
    states = {s["slug"]: s for s in tenantctl("status", "--json")["tenants"]}
    assert (states["late"]["status"], states["late"]["revision"]) == ("active", head("tenant"))
    assert (states["clash"]["status"], states["clash"]["revision"]) == ("provisioning", "t0004")
    keys = {slug: {"X-Tenant-ID": slug, "Authorization": f"Bearer {new['api_key']}"}
            for slug, new in created.items()}  # fmt: skip

    async def reads(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        return {slug: await client.get("/users", headers=h) for slug, h in keys.items()}

    served = _api(fresh_cli, reads)
    assert served["late"].status_code == 200
    # Not served at a revision the code was not written for; its key holders told to retry
    # (a 404 told them their tenant was gone).
    assert served["clash"].status_code == 503, served["clash"].text
    assert served["clash"].headers["retry-after"] == "30"
    assert "being migrated" in served["clash"].json()["detail"]
    held = {c["check"]: c for c in tenantctl("doctor", "--json")}["held back"]
    assert (held["status"], held["detail"]) == (
        "warn", "1 not served until migrated to head: clash: `tenantctl migrate <slug>`, "
        "then `tenantctl resume <slug>`")  # fmt: skip
    # Resumed before it is migrated, it would be served at t0004 all the same: refused.
    early = tenantctl("resume", "clash", code=1).stderr
    assert early == f"error: tenant 'clash' is at t0004, not at head {head('tenant')}: " \
                    "`tenantctl migrate clash` first\n"  # fmt: skip
    _scalar(fresh_cli, "UPDATE tenant_clash.users SET email = 'ann2@x.io' WHERE name = 'B'")
    tenantctl("migrate", "clash")
    assert tenantctl("resume", "clash", "--json")["status"] == "active"
    assert _api(fresh_cli, reads)["clash"].status_code == 200


def test_rename_changes_only_the_display_name(fresh_cli: str) -> None:
    tenantctl("create", "named")
    renamed = tenantctl("rename", "named", "--name", "Named Inc.", "--json")
    assert (renamed["name"], renamed["schema"]) == ("Named Inc.", "tenant_named")
    # The whitespace around a name is not part of it, and a blank name names nothing.
    assert tenantctl("rename", "named", "--name", " Named  ", "--json")["name"] == "Named"
    refused = "error: a display name has 1 to 200 characters besides spaces\n"
    assert tenantctl("rename", "named", "--name", " \t ", code=1).stderr == refused
    assert tenantctl("create", "blank", "--name", "   ", code=1).stderr == refused
    assert tenantctl("create", "empty", "--name", "", code=1).stderr == refused  # not the slug
    assert tenantctl("rename", "named", "--name", "x" * 201, code=1).stderr == refused
    assert tenantctl("show", "named", "--json")["name"] == "Named"


def test_a_name_is_text_on_one_line_and_is_shown_as_written(fresh_cli: str) -> None:
    """A display name reaches every operator's terminal in ``list``: one that held a terminal's
    escape sequence, a line break or a bidirectional override could retitle the window, forge
    a row, or show another name than its own. New ones are refused; one already in the
    registry (written by hand, or before the rule) is shown with such characters escaped, and
    its brackets as brackets, where rich took them for markup and hid them or failed."""
    tenantctl("create", "marked")
    for bad, char in (("Evil\x1b]0;owned\x07", "\\x1b"), ("Two\nLines", "\\n"),
                      ("Acme\u202eexe.txt", "\\u202e"), ("Nul\x00", "\\x00")):  # fmt: skip
        said = (f"error: a display name is text on one line: '{char}' (a control character, "
                "a line break or a bidirectional override) is refused\n")  # fmt: skip
        assert tenantctl("rename", "marked", "--name", bad, code=1).stderr == said
        assert tenantctl("create", "other", "--name", bad, code=1).stderr == said
    assert tenantctl("create", "fine", "--name", "Société\u00a0Générale 👩‍💻", "--json")["name"]
    _scalar(fresh_cli, "UPDATE tenantsvc.tenants SET name = E'Acme [red]Corp[/red] "
                       "[/bold] \\x1b[2J\\nforged' WHERE slug = 'marked'")  # fmt: skip
    written = "Acme [red]Corp[/red] [/bold] \\x1b[2J\\nforged"
    listed = tenantctl("list").stdout
    assert written in listed
    assert "\x1b" not in listed
    assert "tenant_marked" in next(line for line in listed.splitlines() if "forged" in line)
    assert f"name: {written}\n" in tenantctl("show", "marked").stdout
    history = tenantctl("history", "marked").stdout
    assert f"marked -> {written}" in history
    assert "\x1b" not in history
    assert tenantctl("show", "marked", "--json")["name"] == "Acme [red]Corp[/red] [/bold] " \
                                                           "\x1b[2J\nforged"  # fmt: skip
    assert [t["slug"] for t in tenantctl("list", "--json")] == ["fine", "marked"]


def test_dry_run_sql_and_downgrade(
    fresh_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenantctl("create", "one")
    tenantctl("create", "two")
    old, new = add_sku_revision(tmp_path, monkeypatch)
    plan = tenantctl("migrate-all", "--dry-run", "--json")
    assert [(t["slug"], t["before"], t["after"]) for t in plan["would_migrate"]] == [
        ("one", old, new), ("two", old, new)
    ]  # fmt: skip
    sql = tenantctl("migrate-all", "--sql", "--tenant", "one").stdout
    assert "set_config('search_path', 'tenant_one', true)" in sql
    assert "ALTER TABLE products ADD COLUMN sku VARCHAR(64)" in sql
    assert tenantctl("migrate-all", "--dry-run", "--json")["would_migrate"]  # nothing ran
    staged = tenantctl("migrate-all", "--dry-run", "--limit", "1", "--json")
    assert ([t["slug"] for t in staged["would_migrate"]], staged["later"]) == (["one"], 1)
    assert (
        "1 more behind, left by --limit"
        in tenantctl("migrate-all", "--dry-run", "--limit", "1").stdout
    )
    done = tenantctl("migrate-all", "--json", "--limit", "1")
    assert (done["summary"]["migrated"], done["summary"]["later"]) == (1, 1)
    assert [t["after"] for t in done["tenants"]] == [new]
    metrics = tmp_path / "migrate.prom"
    tenantctl("migrate-all", "--metrics-file", str(metrics))
    text_metrics = metrics.read_text()
    assert 'tenantsvc_migrate_all_tenants{outcome="migrated"} 1.0' in text_metrics
    assert 'tenantsvc_migrate_all_tenants{outcome="skipped"} 1.0' in text_metrics
    assert 'tenantsvc_migrate_all_tenants{outcome="later"} 0.0' in text_metrics
    # A file that cannot be written: refused before the run where its directory is missing,
    # and one line after it otherwise (both were a traceback, the second after the run).
    nowhere = tmp_path / "missing" / "migrate.prom"
    assert tenantctl("migrate-all", "--metrics-file", str(nowhere), code=1).stderr == (
        f"error: --metrics-file {nowhere}: {nowhere.parent} is not a directory\n"
    )
    taken = tenantctl("migrate-all", "--metrics-file", str(tmp_path), code=1)
    assert taken.stdout.startswith("2 tenants: 0 migrated to ")
    assert taken.stderr == (f"error: --metrics-file {tmp_path}: Is a directory; the run "
                            "itself is done (0 migrated), only its outcome is not in the "
                            "file\n")  # fmt: skip
    down = tenantctl("migrate-all", "--to", old, "--json")
    assert down["summary"] == {"target": old, "total": 2, "migrated": 2, "skipped": 0, "failed": 0,
                               "lock_retries": 0, "later": 0}  # fmt: skip
    status = tenantctl("status", "--json")
    assert status["head"] == new
    assert [s["at_head"] for s in status["tenants"]] == [False, False]
    assert [s["recorded_revision"] for s in status["tenants"]] == [old, old]
    based = tenantctl("migrate", "one", "--to", "base").stdout  # "to None", it said
    assert based == "1 tenant: 1 migrated to base, 0 already there, 0 failed\n"


@contextmanager
def _long_transaction(url: str, table: str) -> Iterator[None]:
    """Another client's open transaction that has read ``table``, for the block's length."""
    ready, done = threading.Event(), threading.Event()

    async def hold() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn, conn.begin():
                await conn.execute(text(f"LOCK TABLE {table} IN ACCESS SHARE MODE"))
                ready.set()
                await asyncio.to_thread(done.wait)
        finally:
            await engine.dispose()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert ready.wait(30)
        yield
    finally:
        done.set()
        holder.join()


def test_migrations_give_a_locked_tenant_up_after_the_retries_asked_for(
    fresh_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenantctl("create", "one")
    tenantctl("create", "two")
    _, new = add_sku_revision(tmp_path, monkeypatch)
    lock = ("--lock-timeout-ms", "100", "--lock-retries")
    metrics = tmp_path / "migrate.prom"
    with _long_transaction(fresh_cli, "tenant_one.products"):
        failed = tenantctl("migrate-all", *lock, "1", "--json", "--metrics-file", str(metrics),
                           code=1)  # fmt: skip
        single = tenantctl("migrate", "one", *lock, "0", code=1)
    report = json.loads(failed.stdout)
    assert (report["summary"]["migrated"], report["summary"]["lock_retries"]) == (1, 1)
    assert "tenantsvc_migrate_all_lock_retries 1.0" in metrics.read_text()
    [one] = [t for t in report["tenants"] if t["error"]]
    assert (one["slug"], one["attempts"], one["after"]) == ("one", 2, one["before"])
    assert "in 2 attempts (lock timeout 100 ms; last: canceling statement" in one["error"]
    assert single.stderr.count("\n") == 1
    assert single.stderr.startswith("failed: one: could not lock its tables in 1 attempt")
    assert tenantctl("migrate", "one", "--json")["tenants"][0]["after"] == new


def _concurrent_index_revision(directory: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    old = head("tenant")
    upgrade = concurrently('op.create_index("products_name_idx", "products", ["name"]')
    write_revision(directory, "x9401", old, "an index, concurrently", upgrade)
    monkeypatch.setenv(EXTRA_VERSIONS_ENV, str(directory))
    return old


def test_dry_run_and_sql_show_the_concurrent_step(
    fresh_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenantctl("create", "one")
    _concurrent_index_revision(tmp_path, monkeypatch)
    assert tenantctl("migrate-all", "--dry-run", "--json")["concurrent"] is True
    assert "built concurrently" in tenantctl("migrate-all", "--dry-run").stdout
    sql = tenantctl("migrate-all", "--sql", "--tenant", "one").stdout
    psql = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    env = {**os.environ, **libpq_env(fresh_cli)}
    subprocess.run(psql, input=sql, text=True, check=True, capture_output=True, timeout=60, env=env)
    index = ("SELECT indisvalid FROM pg_index "
             "WHERE indexrelid = 'tenant_one.products_name_idx'::regclass")  # fmt: skip
    assert _scalar(fresh_cli, index) is True  # the printed SQL runs as it stands


def test_a_concurrent_index_is_refused_through_pgbouncer(
    fresh_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its step holds a session, which transaction pooling would hand to other clients."""
    tenantctl("create", "one")
    old = _concurrent_index_revision(tmp_path, monkeypatch)
    monkeypatch.setenv("TENANTSVC_PGBOUNCER", "true")
    get_settings.cache_clear()
    refused = tenantctl("migrate-all", code=1)
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: a revision builds an index concurrently")
    assert "run migrations against PostgreSQL directly" in refused.stderr
    [one] = tenantctl("status", "--json")["tenants"]
    assert one["revision"] == old
    monkeypatch.delenv("TENANTSVC_PGBOUNCER")
    get_settings.cache_clear()
    assert tenantctl("migrate-all", "--json")["summary"]["migrated"] == 1


def test_export_and_import_a_tenant(fresh_cli: str, tmp_path: Path) -> None:
    tenantctl("create", "shop", "--name", "Shop Ltd")
    _scalar(fresh_cli, "INSERT INTO tenant_shop.users (email, name) VALUES ('a@x.io', 'Ann')")
    file = tmp_path / "shop.tar"
    exported = tenantctl("export", "shop", str(file), "--json")
    assert exported["rows"] == {
        "idempotency_keys": 0,
        "order_items": 0,
        "orders": 0,
        "products": 0,
        "users": 1,
    }
    tenantctl("suspend", "shop")  # moving it: no new requests, then the writes in progress
    held = tenantctl("export", "shop", str(tmp_path / "held.tar"), "--hold-writes", "--json")
    assert held["rows"] == exported["rows"]
    refused = tenantctl("export", "shop", str(file), code=1)  # never overwrites
    assert (
        refused.stderr == f"error: {file} exists: choose a new file (an export never overwrites)\n"
    )
    imported = tenantctl("import", str(file), "shop_copy", "--json")
    assert (imported["name"], imported["rows"]["users"], imported["error"]) == ("Shop Ltd", 1, None)
    assert imported["api_key"].startswith("tsk_")
    assert _scalar(fresh_cli, "SELECT name FROM tenant_shop_copy.users") == "Ann"
    (tmp_path / "junk").write_text("junk")
    bad = tenantctl("import", str(tmp_path / "junk"), "other", code=1)
    assert bad.stderr.count("\n") == 1
    assert bad.stderr == f"error: {tmp_path / 'junk'}: not a tenant export (not a tar file)\n"
    assert tenantctl("export", "nobody", str(tmp_path / "n.tar"), code=1).stderr == (
        "error: unknown tenant 'nobody'\n"
    )
    assert not (tmp_path / "n.tar").exists()  # nothing half-written left behind


def test_a_tenant_moves_through_a_pipe(fresh_cli: str, tmp_path: Path) -> None:
    """`export acme - | import - acme`, two processes and a pipe, as over ssh: the rows go
    through stdout, the report to stderr, and no file named "-" is left in the directory."""
    tenantctl("create", "shop")
    _scalar(fresh_cli, "INSERT INTO tenant_shop.users (email, name) VALUES ('a@x.io', 'Ann')")
    command = TENANTCTL_COMMAND
    with subprocess.Popen([*command, "export", "shop", "-"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as exporter:  # fmt: skip
        assert exporter.stdout is not None
        assert exporter.stderr is not None
        importer = subprocess.run([*command, "import", "-", "shop_copy", "--json"], cwd=tmp_path,
                                  stdin=exporter.stdout, capture_output=True, text=True,
                                  timeout=60, check=False)  # fmt: skip
        exporter.stdout.close()
        report = exporter.stderr.read().decode()
    assert (exporter.returncode, importer.returncode) == (0, 0), (report, importer.stderr)
    assert report.startswith("exported shop at ")
    assert "users 1" in report
    assert json.loads(importer.stdout)["rows"]["users"] == 1
    assert _scalar(fresh_cli, "SELECT name FROM tenant_shop_copy.users") == "Ann"
    assert list(tmp_path.iterdir()) == []
    _, terminal = pty.openpty()  # binary on a terminal: refused before anything is read
    refused = subprocess.run([*command, "export", "shop", "-"], cwd=tmp_path,
                             stdout=terminal, stderr=subprocess.PIPE, text=True, timeout=60,
                             check=False)  # fmt: skip
    assert (refused.returncode, refused.stderr) == (
        1,
        "error: not writing an export to a terminal: redirect stdout, or name a file\n",
    )
    empty = subprocess.run([*command, "import", "-", "nothing"], cwd=tmp_path,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, check=False)  # fmt: skip
    assert (empty.returncode, empty.stderr) == (
        1,
        "error: stdin: not a tenant export (not a tar file)\n",
    )


def test_clone_copies_a_tenant_into_a_new_one(
    fresh_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the clone's export goes
    original = tenantctl("create", "prod", "--name", "Prod Co", "--json")
    _scalar(fresh_cli, "INSERT INTO tenant_prod.users (email, name) VALUES ('a@x.io', 'Ann')")
    copy = tenantctl("clone", "prod", "staging", "--json")
    assert (copy["schema"], copy["name"], copy["rows"]["users"]) == ("tenant_staging", "Prod Co", 1)
    assert copy["api_key"] != original["api_key"]  # keys stay behind: the copy has its own
    _scalar(fresh_cli, "UPDATE tenant_staging.users SET name = 'changed'")
    assert _scalar(fresh_cli, "SELECT name FROM tenant_prod.users") == "Ann"
    assert tenantctl("clone", "prod", "staging", code=1).stderr == (
        "error: tenant 'staging' already exists\n"
    )
    assert tenantctl("clone", "nobody", "x2", code=1).stderr == "error: unknown tenant 'nobody'\n"
    assert list(tmp_path.iterdir()) == []  # no export left behind, success or not


def test_doctor_passes_then_catches_a_leaky_search_path(
    fresh_cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTSVC_POOL_SIZE", "20")
    monkeypatch.setenv("TENANTSVC_MAX_OVERFLOW", "10")
    monkeypatch.setenv("TENANTSVC_METRICS_TOKEN", "a-scraper-token-0123")
    get_settings.cache_clear()
    tenantctl("create", "healthy")
    checks = {c["check"]: c for c in tenantctl("doctor", "--json")}
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert "1 worker x (20 pool + 10 overflow)" in checks["pool"]["detail"]
    assert checks["tenant cap"]["detail"] == (
        "a tenant may hold 22 of a worker's 30 connections; 8 stay for the others"
    )
    _scalar(fresh_cli, "CREATE TABLE public.products (id int)")
    result = tenantctl("doctor", code=1)
    assert "FAIL  search_path" in result.stdout


def test_doctor_warns_about_an_index_a_failed_concurrent_build_left(fresh_cli: str) -> None:
    tenantctl("create", "built")
    assert {c["check"]: c for c in tenantctl("doctor", "--json")}["indexes"]["status"] == "ok"

    async def failed_build() -> None:
        engine = create_async_engine(fresh_cli, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("INSERT INTO tenant_built.users (email, name) VALUES "
                                        "('a@x.io', 'same'), ('b@x.io', 'same')"))  # fmt: skip
                with pytest.raises(Exception, match="could not create unique index"):
                    await conn.execute(text("CREATE UNIQUE INDEX CONCURRENTLY users_name_idx "
                                            "ON tenant_built.users (name)"))  # fmt: skip
        finally:
            await engine.dispose()

    asyncio.run(failed_build())
    check = {c["check"]: c for c in tenantctl("doctor", "--json")}["indexes"]
    assert check["status"] == "warn"
    assert check["detail"].startswith("1 invalid (a concurrent build failed")
    assert "tenant_built.users_name_idx;" in check["detail"]


def test_doctor_names_schemas_and_roles_no_tenant_owns(fresh_cli: str) -> None:
    """Named as tenantctl names a tenant's, owned by none: a purged customer's rows restored
    from an old dump, say. A purge leaves none; a schema not named like ours is not ours."""
    tenantctl("create", "kept", "gone", "moved")
    tenantctl("drop", "gone", "--purge", "--yes")
    tenantctl("drop", "moved", "--yes")
    assert {c["check"]: c for c in tenantctl("doctor", "--json")}["strays"]["status"] == "ok"
    role = role_prefix(make_url(fresh_cli).database or "") + "99999"
    made = ["CREATE SCHEMA tenant_gone", "CREATE SCHEMA archived_7_old", "CREATE SCHEMA tenantx",
            f"CREATE ROLE {role}"]  # fmt: skip
    try:
        for sql in made:
            _scalar(fresh_cli, sql)
        check = {c["check"]: c for c in tenantctl("doctor", "--json")}["strays"]
        # Anyone who may create a schema names it: doctor's lines show the name as written.
        _scalar(fresh_cli, 'CREATE SCHEMA "tenant_z\x1b[2J"')
        said = tenantctl("doctor").stdout
    finally:
        _scalar(fresh_cli, f"DROP ROLE {role}")  # roles outlive the test's database
    assert check["status"] == "warn"
    assert check["detail"].startswith(
        f"no tenant owns schemas archived_7_old, tenant_gone; roles {role}: look at what"
    )
    assert "schemas archived_7_old, tenant_gone, tenant_z\\x1b[2J; roles" in said
    assert "\x1b" not in said


def test_doctor_warns_about_keys_about_to_expire(fresh_cli: str) -> None:
    tenantctl("create", "keyed")
    tenantctl("keys", "create", "keyed", "--expires-in", "30d")  # past the warning's horizon
    assert {c["check"]: c for c in tenantctl("doctor", "--json")}["api keys"]["status"] == "ok"
    soon = tenantctl("keys", "create", "keyed", "--expires-in", "3d", "--json")
    check = {c["check"]: c for c in tenantctl("doctor", "--json")}["api keys"]
    assert check["status"] == "warn"
    assert f"keyed key {soon['key_id']} in 3 d;" in check["detail"]
    tenantctl("keys", "revoke", "keyed", str(soon["key_id"]))  # revoked: nothing to hand over
    assert {c["check"]: c for c in tenantctl("doctor", "--json")}["api keys"]["status"] == "ok"


def test_doctor_warns_when_pgbouncer_leaves_the_service_without_timeouts(
    fresh_cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PgBouncer drops the timeouts the service sets when it connects: then they must come
    from the role, and the doctor says how."""
    timeouts = "idle_in_transaction_session_timeout 60000 ms, statement_timeout 30000 ms"
    assert _doctor("timeouts") == {"check": "timeouts", "status": "ok", "detail": timeouts}
    monkeypatch.setenv("TENANTSVC_PGBOUNCER", "true")
    get_settings.cache_clear()
    check = _doctor("timeouts")
    assert check["status"] == "warn"
    user = _scalar(fresh_cli, "SELECT quote_ident(current_user)")
    assert check["detail"].endswith(
        f"none is set for {user}: ALTER ROLE {user} SET idle_in_transaction_session_timeout = "
        f"'60000ms'; ALTER ROLE {user} SET statement_timeout = '30000ms'"
    )
    database = make_url(fresh_cli).database
    for name, value in (
        ("statement_timeout", "30s"),
        ("idle_in_transaction_session_timeout", "1min"),
    ):
        _scalar(fresh_cli, f"ALTER ROLE {user} IN DATABASE {database} SET {name} = '{value}'")
    assert _doctor("timeouts") == {"check": "timeouts", "status": "ok", "detail": timeouts}


def _doctor(check: str) -> dict[str, str]:
    found: dict[str, str] = {c["check"]: c for c in tenantctl("doctor", "--json")}[check]
    return found


def test_tenant_cap_check_warns_when_one_tenant_can_take_the_pool() -> None:
    for cap in (0, 30, 40):
        check = tenant_cap_check(Settings(pool_size=20, max_overflow=10,
                                          tenant_max_connections=cap))  # fmt: skip
        assert check.status == "warn", cap
        assert "TENANTSVC_TENANT_MAX_CONNECTIONS below 30" in check.detail
    assert tenant_cap_check(Settings(tenant_max_connections=29)).status == "ok"


def test_metrics_check_says_whether_metrics_can_be_scraped() -> None:
    off = metrics_check(Settings(metrics_token=None))
    assert off.status == "warn"
    assert off.detail == (
        "/metrics is off: set TENANTSVC_METRICS_TOKEN, "
        "and have the scraper send it as a bearer token"
    )
    assert metrics_check(Settings(metrics_token="x" * 16)).status == "ok"


def test_pool_check_says_what_to_change() -> None:
    ok = pool_check(make_settings("postgresql+asyncpg://x/y", workers=2), 100, 3)
    assert ok.status == "ok"
    over = pool_check(
        make_settings("postgresql+asyncpg://x/y", workers=4, pool_size=20, max_overflow=10), 100, 3
    )
    assert over.status == "fail"
    assert "= 125; server allows 97" in over.detail
    assert "TENANTSVC_POOL_SIZE=13" in over.detail
    assert "PgBouncer" in over.detail
    bounced = pool_check(
        make_settings("postgresql+asyncpg://x/y", workers=4, pgbouncer=True), 100, 3
    )  # the server's limit is PgBouncer's to keep; the clients' is the service's to say
    assert bounced.status == "ok"
    assert "set its max_client_conn to 65 or more" in bounced.detail
    assert "reserve_pool_size for this database and user (with other clients' pools) within 97" in (
        bounced.detail
    )


def test_create_killed_at_any_point_converges_on_rerun(fresh_cli: str) -> None:
    """kill -9 at points spread over the command's life; the re-run must finish the tenant and
    nothing half-built may ever be registered."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": fresh_cli}
    command = [sys.executable, "-m", "cli.main", "create"]
    for i, delay in enumerate((0.05, 0.3, 0.5, 0.7, 0.9, 1.2)):
        slug = f"killed_{i}"
        victim = subprocess.Popen([*command, slug], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        rerun = subprocess.run([*command, slug, "--json"], env=env, cwd=ROOT, capture_output=True,
                               text=True, timeout=60, check=False)  # fmt: skip
        assert rerun.returncode == 0 or "already exists" in rerun.stderr, rerun.stderr
    status = tenantctl("status", "--json")
    states = {s["slug"]: s for s in status["tenants"]}
    assert set(states) == {f"killed_{i}" for i in range(6)}
    assert all(
        s["at_head"] and s["drift"] is False and s["status"] == "active" for s in states.values()
    )
    assert status["stuck_provisioning"] == []
    assert head("tenant") == status["head"]


def _loaded(importing: str, heavy: tuple[str, ...]) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after ``importing``."""
    script = f"import sys; {importing}; print([m for m in {heavy!r} if m in sys.modules])"
    probe = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = ast.literal_eval(probe.stdout.strip())
    return loaded


def test_a_purge_waits_for_its_tenants_tables_only_so_long(
    fresh_cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that holds one of the tenant's tables (a report, a psql session left
    open) held the purge for the statement timeout (30 s), the tenant's requests queued behind
    it, and then "canceling statement due to statement timeout". Now it waits as a migration
    does, then says why and changes nothing; once that transaction ends, it goes through."""
    tenantctl("create", "held")
    monkeypatch.setenv("TENANTSVC_MIGRATION_LOCK_TIMEOUT_MS", "100")
    monkeypatch.setenv("TENANTSVC_MIGRATION_LOCK_RETRIES", "1")
    get_settings.cache_clear()
    holding = "BEGIN; SELECT count(*) FROM tenant_held.products; SELECT pg_sleep(60);"
    holder = subprocess.Popen([str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-c", holding],
                              env={**os.environ, **libpq_env(fresh_cli)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        locks = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                 "WHERE c.oid = 'tenant_held.products'::regclass")  # fmt: skip
        deadline = time.monotonic() + 10
        while not _scalar(fresh_cli, locks):
            assert time.monotonic() < deadline, "the holding transaction never began"
            time.sleep(0.05)
        started = time.monotonic()
        refused = tenantctl("drop", "held", "--purge", "--yes", code=1)
        assert time.monotonic() - started < 10
    finally:  # its backend sleeps on when psql goes: end the transaction on the server
        ended = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")  # fmt: skip
        _scalar(fresh_cli, ended)
        holder.wait(timeout=30)
    assert refused.stderr.startswith(
        "error: tenant 'held' not purged: could not lock its tables in 2 attempts "
        "(lock timeout 100 ms; last: canceling statement due to lock timeout); nothing "
        "changed in it"
    ), refused.stderr
    assert tenantctl("show", "held", "--json")["status"] == "active"
    assert "tenant held: purged" in tenantctl("drop", "held", "--purge", "--yes").stdout


def test_registry_commands_do_not_load_the_migration_machinery() -> None:
    """`list`, `show`, `keys` and the rest of admin.py need no Alembic: loading it (through
    provisioning) cost each of them 0.08-0.17 s of a 0.6-0.7 s command."""
    heavy = ("alembic", "tenantsvc.tenancy.migrator")
    assert _loaded("import tenantsvc.tenancy.admin", heavy) == []


def test_help_is_fast_and_lean() -> None:
    """`tenantctl --help` must not import the web stack or the database drivers."""
    heavy = ("fastapi", "sqlalchemy", "asyncpg", "alembic")
    assert _loaded("from cli.main import app", heavy) == []


def test_an_empty_answer_is_a_line_that_says_so(fresh_cli: str) -> None:
    """Where a table has no rows, one line says what there is none of: an empty frame of
    headings left the operator to work out whether the command had looked at all."""
    tenantctl("migrate-all")
    assert tenantctl("list").stdout == "no tenants\n"
    assert tenantctl("usage").stdout == "no tenants\n"
    assert tenantctl("status").stdout.startswith("no tenants\nhead ")
    tenantctl("create", "quiet")
    assert tenantctl("list", "--status", "suspended").stdout == "no suspended tenants\n"
    assert tenantctl("requests", "quiet", "--days", "7").stdout == (
        "no requests served for quiet in the last 7 days\n"
    )
    assert "│ quiet │ tenant_quiet │ active │" in tenantctl("list").stdout  # rows: a table


def test_a_concurrency_past_the_servers_free_connections_is_refused(fresh_cli: str) -> None:
    """`migrate-all --concurrency 500` on a server of max_connections 100 opened connections
    until the server refused them, failing tenants on "too many clients" midway through a
    fleet. It is refused before anything runs, naming what the server has free."""
    most = _scalar(fresh_cli, "SELECT current_setting('max_connections')::int")
    tenantctl("create", *(f"crowded{i}" for i in range(most + 1)))
    assert "0 failed" in tenantctl("migrate-all", "--to", "t0004").stdout  # behind head again
    refused = tenantctl("migrate-all", "--concurrency", str(most + 1), code=1).stderr
    assert refused.startswith(f"error: --concurrency {most + 1}: the server has "), refused
    assert len(refused.strip().splitlines()) == 1
    assert _scalar(fresh_cli, "SELECT count(*) FROM tenantsvc.tenant_revisions "
                              "WHERE revision = 't0004'") == most + 1  # fmt: skip
    # As many as there are tenants behind, if that fits: one tenant needs one connection.
    assert "0 failed" in tenantctl("migrate-all", "--tenant", "crowded0", "--concurrency",
                                   str(most + 1)).stdout  # fmt: skip


async def test_a_write_to_a_database_that_takes_none_says_what_to_do(
    empty_database_url: str, fresh_engine: AsyncEngine
) -> None:
    """TENANTSVC_DATABASE_URL at a standby, or a primary read-only for maintenance: "cannot
    execute INSERT in a read-only transaction" left the operator to work out which setting."""
    async with read_only_database(fresh_engine, empty_database_url):
        env = {**os.environ, "TENANTSVC_DATABASE_URL": empty_database_url}
        done = await asyncio.to_thread(
            subprocess.run, [*TENANTCTL_COMMAND, "create", "frozen"], env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "in a read-only transaction (the database takes no writes: a standby, or " in (
        done.stderr
    )
    assert done.stderr.count("\n") == 1  # one line

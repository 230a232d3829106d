"""Exporting a tenant to a file and importing it as a new one (tenancy/dumps.py): every row
comes back, nothing of another tenant goes out, a bad file creates nothing."""

import asyncio
import contextlib
import errno
import gzip
import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.db.engine import create_engine
from tenantsvc.tenancy import fleet
from tenantsvc.tenancy.admin import get_tenant
from tenantsvc.tenancy.dumps import DumpError, export_tenant, import_tenant
from tenantsvc.tenancy.errors import TenancyError, TenantExistsError, TenantNotFoundError
from tenantsvc.tenancy.lifecycle import archive
from tenantsvc.tenancy.locking import LockPolicy
from tenantsvc.tenancy.migrator import head
from tenantsvc.tenancy.provisioning import create_tenant
from tenantsvc.testing.app import make_settings
from tests.polling import until_sql
from tests.tenancy.fleet_tenants import enter
from tests.tenancy.revisions import add_sku_revision

ROWS = {"users": 2, "products": 3, "orders": 2, "order_items": 3, "idempotency_keys": 1}
SEED = """
INSERT INTO users (email, name) VALUES ('a@x.io', 'Ann'), ('b@x.io', 'Bob');
INSERT INTO products (name, price_cents, stock, deleted_at)
VALUES ('pen', 150, 7, NULL), ('ink', 300, 0, NULL), ('old', 99, 1, now());
INSERT INTO orders (user_id, cancelled_at) VALUES (1, NULL), (2, now());
INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
VALUES (1, 1, 2, 150), (1, 2, 1, 300), (2, 3, 1, 99);
INSERT INTO idempotency_keys (key, request_hash, status, response)
VALUES ('retry-1', '\\x0102', 201, '{"id": 1}');
"""
ONE_PRODUCT = "INSERT INTO products (name, price_cents, stock) VALUES ('late', 1, 1)"
EVERYTHING = {
    "users": "SELECT id, email, name, created_at FROM users ORDER BY id",
    "products": "SELECT id, name, price_cents, stock, deleted_at, created_at FROM products "
    "ORDER BY id",
    "orders": "SELECT id, user_id, created_at, cancelled_at FROM orders ORDER BY id",
    "order_items": "SELECT * FROM order_items ORDER BY order_id, product_id",
    "idempotency_keys": "SELECT * FROM idempotency_keys",  # a moved tenant's retries replay
}


async def _seeded(engine: AsyncEngine, slug: str) -> str:
    schema = (await create_tenant(engine, slug)).schema
    async with engine.begin() as conn:
        await enter(conn, schema)
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute(SEED)  # type: ignore[union-attr]
    return schema


async def _rows(engine: AsyncEngine, schema: str) -> dict[str, list[tuple[object, ...]]]:
    async with engine.begin() as conn:
        await enter(conn, schema)
        return {t: [tuple(r) for r in await conn.execute(text(q))] for t, q in EVERYTHING.items()}


async def test_an_exported_tenant_comes_back_whole_as_a_new_one(
    fresh_engine: AsyncEngine, tmp_path: Path
) -> None:
    source = await _seeded(fresh_engine, "source")
    await _seeded(fresh_engine, "other")  # the same ids: none of its rows may travel
    async with fresh_engine.begin() as conn:
        await enter(conn, "tenant_other")
        await conn.execute(text("UPDATE users SET name = 'OTHER'"))
    file = tmp_path / "source.tar"
    exported = await export_tenant(fresh_engine, "source", file)
    assert (exported.revision, exported.rows) == (head("tenant"), ROWS)
    imported = await import_tenant(fresh_engine, file, "copy")
    assert (imported.error, imported.rows, imported.tenant.status) == (None, ROWS, "active")
    assert imported.tenant.name == "source"  # the file's, unless given
    copy = imported.tenant.schema
    assert await _rows(fresh_engine, copy) == await _rows(fresh_engine, source)
    async with fresh_engine.begin() as conn:  # the identities go on past the loaded ids
        await enter(conn, copy)
        new_id = await conn.scalar(text("INSERT INTO products (name, price_cents, stock) "
                                        "VALUES ('new', 1, 1) RETURNING id"))  # fmt: skip
        assert new_id == 4
        assert "OTHER" not in str(await conn.scalar(text("SELECT array_agg(name) FROM users")))
    with pytest.raises(TenantExistsError):
        await import_tenant(fresh_engine, file, "copy")


async def test_an_export_from_an_older_revision_is_imported_then_migrated(
    fresh_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = await _seeded(fresh_engine, "before")
    file = tmp_path / "before.tar"
    await export_tenant(fresh_engine, "before", file)
    old, new = add_sku_revision(tmp_path, monkeypatch)  # head moves on after the export
    imported = await import_tenant(fresh_engine, file, "after", "After Co")
    assert (imported.revision, imported.error, imported.tenant.name) == (old, None, "After Co")
    async with fresh_engine.connect() as conn:
        tenant = await get_tenant(conn, "after")
        assert tenant.status == "active"  # served once it had migrated
        at = await conn.scalar(text("SELECT max(version_num) FROM tenant_after.alembic_version"))
    assert at == new
    assert await _rows(fresh_engine, "tenant_after") == await _rows(fresh_engine, source)


async def test_an_archived_tenant_can_be_exported(
    fresh_engine: AsyncEngine, tmp_path: Path
) -> None:
    source = await _seeded(fresh_engine, "gone")
    before = await _rows(fresh_engine, source)
    async with fresh_engine.begin() as conn:
        await archive(conn, "gone")
    await export_tenant(fresh_engine, "gone", tmp_path / "gone.tar")
    back = await import_tenant(fresh_engine, tmp_path / "gone.tar", "back")
    assert await _rows(fresh_engine, back.tenant.schema) == before


async def test_a_tenant_at_base_is_not_exported(fresh_engine: AsyncEngine, tmp_path: Path) -> None:
    """Taken down to base, a tenant has no tables: its export wrote a manifest with no revision,
    which import then refused as "not the shape of version 1", and `clone` said the same of a
    file the user never saw. Now nothing is written, and the line says why."""
    await create_tenant(fresh_engine, "bare")
    await fleet.migrate_all(fresh_engine, target="base", slugs=["bare"])
    file = tmp_path / "bare.tar"
    with pytest.raises(DumpError, match="'bare' is at base \\(no tables\\): nothing to export"):
        await export_tenant(fresh_engine, "bare", file)
    assert not file.exists()


def _tampered(file: Path, out: Path, change: "dict[str, object]", drop: str = "") -> Path:
    """``file`` with its manifest changed, and a member left out."""
    with tarfile.open(file) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member)
            if member.name == drop:
                continue
            if member.name == "manifest.json":
                manifest = {**json.load(data), **change}  # type: ignore[arg-type]
                raw = json.dumps(manifest).encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    return out


async def test_a_bad_file_creates_nothing(fresh_engine: AsyncEngine, tmp_path: Path) -> None:
    await _seeded(fresh_engine, "good")
    file = tmp_path / "good.tar"
    await export_tenant(fresh_engine, "good", file)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    whole = file.read_bytes()
    with tarfile.open(file) as tar:  # copies that stopped early: inside a member, between two
        ends = tar.getmember("manifest.json").offset, tar.getmembers()[0].offset_data + 10
    (tmp_path / "cut.tar").write_bytes(whole[: ends[1]])
    (tmp_path / "cut_between.tar").write_bytes(whole[: ends[0]])
    squeezed = gzip.compress(whole)
    (tmp_path / "cut.tar.gz").write_bytes(squeezed[: len(squeezed) // 2])
    with tarfile.open(file) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    wrong_rows = [{**t, "rows": t["rows"] + 1} if t["name"] == "users" else t
                  for t in manifest["tables"]]  # fmt: skip
    evil_table = [{**t, "name": "pg_authid"} if t["name"] == "users" else t
                  for t in manifest["tables"]]  # fmt: skip
    evil_column = [{**t, "columns": ["id", "email); DROP TABLE users; --"]}
                   if t["name"] == "users" else t for t in manifest["tables"]]  # fmt: skip
    cases = {
        "not a tenant export": tmp_path / "junk.tar",
        "damaged or cut short \\(unexpected end of data\\)$": tmp_path / "cut.tar",
        "no manifest.json \\(an export ends with it": tmp_path / "cut_between.tar",
        "damaged or cut short \\(Compressed file ended": tmp_path / "cut.tar.gz",
        "missing.tar: cannot read it \\(No such file or directory\\)$": tmp_path / "missing.tar",
        "no users.copy": _tampered(file, tmp_path / "a.tar", {}, drop="users.copy"),
        "not a tenantsvc-tenant-export file": _tampered(file, tmp_path / "b.tar", {"version": 9}),
        "at tenant revision 'nope', which this build does not know":
            _tampered(file, tmp_path / "c.tar", {"revision": "nope"}),
        "users: COPY 2 where the manifest says 3":
            _tampered(file, tmp_path / "d.tar", {"tables": wrong_rows}),
        "are not its revision's": _tampered(file, tmp_path / "e.tar", {"tables": evil_table}),
        "are not those of its revision":
            _tampered(file, tmp_path / "f.tar", {"tables": evil_column}),
        "does not have the shape": _tampered(file, tmp_path / "g.tar", {"tables": [{"name": 1}]}),
        "the file's name for the tenant, 'Evil\\\\x1b]0;owned\\\\x07', will not do: .* "
        "give it one with --name$":
            _tampered(file, tmp_path / "h.tar", {"name": "Evil\x1b]0;owned\x07"}),
    }  # fmt: skip
    for i, (message, bad) in enumerate(cases.items()):
        with pytest.raises(Exception, match=message) as refused:
            await import_tenant(fresh_engine, bad, f"bad{i}")
        assert isinstance(refused.value, TenancyError), message  # the CLI's one line
        with pytest.raises(TenantNotFoundError):  # no registry row, and no schema
            async with fresh_engine.connect() as conn:
                await get_tenant(conn, f"bad{i}")
    async with fresh_engine.connect() as conn:
        schemas = await conn.scalar(text("SELECT count(*) FROM pg_namespace "
                                         "WHERE nspname LIKE 'tenant_bad%'"))  # fmt: skip
    assert schemas == 0
    summary = await fleet.migrate_all(fresh_engine)  # the fleet is as it was
    assert summary.failures == []
    named = await import_tenant(fresh_engine, tmp_path / "h.tar", "renamed", "Good Name")
    assert named.tenant.name == "Good Name"


async def test_an_export_is_one_point_in_time_while_orders_are_placed(
    fresh_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Orders (stock taken and an item written, one transaction each) go on while the export
    copies the tables one after another: in the file, every product's stock and its units
    sold still add up to what it started with."""
    schema = (await create_tenant(fresh_engine, "busy")).schema
    async with fresh_engine.begin() as conn:
        await enter(conn, schema)
        await conn.execute(text("INSERT INTO users (email, name) VALUES ('a@x.io', 'A')"))
        await conn.execute(text("INSERT INTO products (name, price_cents, stock) SELECT "
                                "'p' || i, 1, 100 FROM generate_series(1, 200000) i"))  # fmt: skip
    stop = asyncio.Event()

    async def orders() -> int:
        placed = 0
        while not stop.is_set():
            async with fresh_engine.begin() as conn:
                await enter(conn, schema)
                product = placed % 50 + 1
                await conn.execute(text("UPDATE products SET stock = stock - 1 WHERE id = :p"),
                                   {"p": product})  # fmt: skip
                order = await conn.scalar(text("INSERT INTO orders (user_id) VALUES (1) "
                                               "RETURNING id"))  # fmt: skip
                await conn.execute(text("INSERT INTO order_items VALUES (:o, :p, 1, 1)"),
                                   {"o": order, "p": product})  # fmt: skip
            placed += 1
        return placed

    placing = asyncio.create_task(orders())
    await asyncio.sleep(0.2)
    await export_tenant(fresh_engine, "busy", tmp_path / "busy.tar")
    stop.set()
    assert await placing > 0
    copy = (await import_tenant(fresh_engine, tmp_path / "busy.tar", "busy_copy")).tenant.schema
    async with fresh_engine.begin() as conn:
        await enter(conn, copy)
        broken = await conn.scalar(text(
            "SELECT count(*) FROM products p WHERE p.stock + coalesce((SELECT sum(quantity) "
            "FROM order_items i WHERE i.product_id = p.id), 0) <> 100"
        ))  # fmt: skip
        sold = await conn.scalar(text("SELECT count(*) FROM order_items"))
    assert broken == 0
    assert sold > 0  # orders were placed before the snapshot, and travelled with it


@contextlib.asynccontextmanager
async def _open_write(engine: AsyncEngine, schema: str) -> AsyncIterator[asyncio.Event]:
    """A product inserted in a transaction left open until the event is set (a request still
    committing when its tenant was suspended), then committed."""
    done, inserted = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with engine.begin() as conn:
            await enter(conn, schema)
            await conn.execute(text(ONE_PRODUCT))
            inserted.set()
            await done.wait()

    writing = asyncio.create_task(write())
    await inserted.wait()
    try:
        yield done
    finally:
        done.set()
        await writing


def _waiting_for_a_lock(schema: str) -> str:
    return ("SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
            "AND NOT l.granted")  # fmt: skip


async def test_holding_writes_waits_for_a_write_in_progress_and_keeps_it(
    fresh_engine: AsyncEngine, tmp_path: Path
) -> None:
    schema = await _seeded(fresh_engine, "moving")
    async with _open_write(fresh_engine, schema) as commit:
        await export_tenant(fresh_engine, "moving", tmp_path / "plain.tar")
        held = asyncio.create_task(export_tenant(fresh_engine, "moving", tmp_path / "held.tar",
                                                 LockPolicy(lock_timeout_ms=10_000)))  # fmt: skip
        await until_sql(fresh_engine, _waiting_for_a_lock(schema), "the export never waited")
        assert not held.done()
        commit.set()
    assert (await held).rows["products"] == ROWS["products"] + 1  # the committed write is in
    plain = await import_tenant(fresh_engine, tmp_path / "plain.tar", "plain")
    assert plain.rows["products"] == ROWS["products"]  # a plain snapshot misses it


async def test_holding_writes_gives_up_on_writes_that_do_not_stop(
    fresh_engine: AsyncEngine, tmp_path: Path
) -> None:
    schema = await _seeded(fresh_engine, "stuck")
    policy = LockPolicy(lock_timeout_ms=50, retries=1, pause_seconds=0.01)
    async with _open_write(fresh_engine, schema):
        with pytest.raises(DumpError, match="its writes did not stop in 2 waits of 50 ms"):
            await export_tenant(fresh_engine, "stuck", tmp_path / "stuck.tar", policy)
    assert not (tmp_path / "stuck.tar").exists()


async def test_exports_and_imports_outlast_the_requests_statement_timeout(
    fresh_engine: AsyncEngine, empty_database_url: str, tmp_path: Path
) -> None:
    """The connections' own statement_timeout is the requests'; a big tenant's COPY, or one
    waiting behind a migration's lock, takes longer."""
    schema = await _seeded(fresh_engine, "large")
    async with fresh_engine.begin() as conn:
        await enter(conn, schema)
        await conn.execute(text("INSERT INTO products (name, price_cents, stock) SELECT "
                                "'p' || i, 1, 1 FROM generate_series(1, 300000) i"))  # fmt: skip
    short = create_engine(make_settings(empty_database_url, statement_timeout_ms=100))
    try:
        async with fresh_engine.begin() as conn:  # a migration's lock, for longer than that
            await conn.execute(text(f"LOCK TABLE {schema}.products IN ACCESS EXCLUSIVE MODE"))
            exporting = asyncio.create_task(export_tenant(short, "large", tmp_path / "l.tar"))
            await until_sql(fresh_engine, _waiting_for_a_lock(schema), "no export waited")
            await asyncio.sleep(0.3)
        await exporting
        imported = await import_tenant(short, tmp_path / "l.tar", "large_copy")
    finally:
        await short.dispose()
    assert imported.rows["products"] == ROWS["products"] + 300_000


async def test_an_export_is_on_disk_before_it_is_reported_done(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's data, and the directory that names it: written only to the operating
    system's cache, both were lost with a crash just after the command (and the purge that
    followed it had been committed to the database's disk)."""
    await _seeded(engine, "synced")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "synced.tar"
    await export_tenant(engine, "synced", target)
    [written, directory] = synced
    assert (Path(written).parent, directory) == (tmp_path, str(tmp_path))
    assert Path(written).name.startswith(".synced.tar.")  # then linked to its name
    assert os.listdir(tmp_path) == ["synced.tar"]


async def test_an_export_lands_where_the_filesystem_has_no_hard_links(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAT or exFAT drive, some network and FUSE mounts: link() is refused there, and every
    export to them failed once it was written ("Operation not permitted"). It still never
    takes the name of a file that is there."""
    await _seeded(engine, "unlinked")

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", str(args[0]), None, str(args[1]))

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "unlinked.tar"
    done = await export_tenant(engine, "unlinked", target)
    assert os.listdir(tmp_path) == ["unlinked.tar"]
    with tarfile.open(target) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == done.rows
    kept = tmp_path / "kept.tar"
    kept.write_bytes(b"an earlier export")
    with pytest.raises(FileExistsError):
        await export_tenant(engine, "unlinked", kept)
    assert kept.read_bytes() == b"an earlier export"
    assert sorted(os.listdir(tmp_path)) == ["kept.tar", "unlinked.tar"]

    def no_rename(*args: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", no_rename)  # once the name is claimed: nothing left
    with pytest.raises(OSError, match="Input/output error"):
        await export_tenant(engine, "unlinked", tmp_path / "failed.tar")
    assert sorted(os.listdir(tmp_path)) == ["kept.tar", "unlinked.tar"]

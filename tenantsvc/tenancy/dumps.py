"""A tenant's rows as one file: exported from one consistent snapshot, imported as a new tenant.

What platform teams do with a schema-per-tenant fleet: copy a customer into staging, move one
to another database, keep a tenant's data before ``drop --purge``, restore one tenant without
restoring the whole database.

- The file is a tar: ``manifest.json`` (format, the tenant's revision, each table's columns
  and row count) and one binary ``COPY`` per table. Export reads every table in one
  REPEATABLE READ, READ ONLY transaction, so the file is a single point in time even while
  the tenant takes orders; archived tenants export from their archived schema.
- Import builds a new tenant at the file's revision, through provisioning's own path, and
  loads the rows in the same transaction (foreign keys checked, identity sequences moved past
  the loaded ids): a bad file leaves nothing behind. Then, if the file is from an older
  revision, the tenant migrates to head like any other.
- With ``hold`` (``export --hold-writes``) the export first takes a SHARE lock on every table
  of the tenant: it waits for the write transactions in progress to commit, new ones wait
  until the file is written, and only then is the snapshot taken. After ``read-only`` (or
  ``suspend``), that is how a tenant is moved without losing a write: a request that got past
  the registry before the status changed may still be committing, and a plain export's
  snapshot could miss it.
- API keys are not exported (secrets of the source); the new tenant gets its own first key.
- Every name the file holds is checked against the freshly built schema before it is used,
  and the rows only ever reach that schema.
"""

import asyncio
import io
import json
import lzma
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.durable import published, writing_to
from tenantsvc.tenancy.admin import TenantInfo, get_tenant
from tenantsvc.tenancy.ddl import identifier, revision_sql
from tenantsvc.tenancy.errors import TenancyError, UnknownRevisionError, first_line
from tenantsvc.tenancy.lifecycle import serve_at_head
from tenantsvc.tenancy.locking import LockPolicy, LocksNotGranted
from tenantsvc.tenancy.migrator import head, resolve
from tenantsvc.tenancy.provisioning import NewTenant, create_tenant
from tenantsvc.tenancy.slugs import display_name

FORMAT, VERSION = "tenantsvc-tenant-export", 1
# Exports and imports are an operator's jobs, like migrations: a big tenant's COPY may take
# minutes, which the requests' statement_timeout (the connections' own) would cut short.
NO_STATEMENT_TIMEOUT = "SET LOCAL statement_timeout = 0;"
MANIFEST = "manifest.json"
# What reading a cut-short or damaged file raises: tarfile's own errors, and those of the
# compression it reads through (gzip's EOFError, which click would report as "aborted").
_DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

_TABLES = """
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attgenerated = ''
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'
GROUP BY c.relname
"""
_REFERENCES = """
SELECT c.relname, r.relname FROM pg_constraint f
JOIN pg_class c ON c.oid = f.conrelid JOIN pg_class r ON r.oid = f.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE f.contype = 'f' AND n.nspname = $1
"""
_IDENTITIES = """
SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND a.attidentity <> ''
"""


class DumpError(TenancyError):
    pass


@dataclass(frozen=True)
class Exported:
    slug: str
    revision: str | None
    rows: dict[str, int]


@dataclass(frozen=True)
class Imported:
    tenant: NewTenant
    revision: str | None  # the file's; the tenant is at head unless ``error``
    rows: dict[str, int]
    error: str | None = None


async def export_tenant(
    engine: AsyncEngine, slug: str, target: Path | IO[bytes], hold: LockPolicy | None = None
) -> Exported:
    """``target``: a new file, or a stream written front to back (a pipe: ``export acme -``).
    ``hold``: hold the tenant's writes off while exporting (see above), waiting for them as a
    migration waits for its locks."""
    async with engine.connect() as conn:
        tenant = await get_tenant(conn, slug)
    if isinstance(target, Path):
        with published(target) as into:
            revision, tables = await _export(engine, tenant, into, hold)
    else:
        with writing_to(getattr(target, "name", "the output")):  # <stdout>
            revision, tables = await _export(engine, tenant, target, hold)
    return Exported(tenant.slug, revision, {t["name"]: t["rows"] for t in tables})


async def _export(
    engine: AsyncEngine, tenant: TenantInfo, target: Path | IO[bytes], hold: LockPolicy | None
) -> tuple[str | None, list[dict[str, Any]]]:
    schema, slug = tenant.location, tenant.slug
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        async with driver.transaction():
            await driver.execute(NO_STATEMENT_TIMEOUT)
            listed = sorted(await driver.fetch(_TABLES, schema))

        async def attempt() -> tuple[str | None, list[dict[str, Any]]]:
            async with driver.transaction(isolation="repeatable_read", readonly=True):
                # Before any query: the snapshot is taken at the first one, after the lock.
                setup = hold.settings_sql() + _share_lock(schema, listed) if hold else None
                await driver.execute(setup or NO_STATEMENT_TIMEOUT)
                return await _write(driver, tenant, schema, listed, target)

        if hold is None:
            revision, tables = await attempt()
        else:
            try:
                revision, tables = await hold.retrying(attempt)
            except LocksNotGranted as exc:
                raise DumpError(
                    f"tenant {slug!r}: its writes did not stop in {exc.attempts} waits of "
                    f"{hold.lock_timeout_ms} ms for its tables (last: {exc.last}); "
                    "nothing written: try again once its write transactions end"
                ) from exc
    return revision, tables


async def _write(
    driver: Any, tenant: TenantInfo, schema: str, listed: list[Any], target: Path | IO[bytes]
) -> tuple[str | None, list[dict[str, Any]]]:
    """The file, inside the export's transaction: the tables, then the manifest."""
    revision = await driver.fetchval(revision_sql(schema))
    if revision is None:  # its file would have no revision to import at: refused by import
        raise DumpError(
            f"tenant {tenant.slug!r} is at base (no tables): nothing to export; "
            f"`tenantctl migrate {tenant.slug}` first"
        )
    path, stream = _path_or_stream(target)
    with tarfile.open(path, "w" if stream is None else "w|", fileobj=stream) as tar:
        tables = await _copy_out(driver, schema, listed, tar)
        manifest = {"format": FORMAT, "version": VERSION, "slug": tenant.slug,
                    "name": tenant.name, "revision": revision, "tables": tables,
                    "exported_at": datetime.now(UTC).isoformat()}  # fmt: skip
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
    return revision, tables


def _share_lock(schema: str, tables: list[Any]) -> str:
    """Writers hold ROW EXCLUSIVE until they commit, which SHARE waits for and then keeps out;
    readers (and ``SELECT ... FOR UPDATE``) go on."""
    names = ", ".join(f"{identifier(schema)}.{identifier(table)}" for table, _ in tables)
    return f"LOCK TABLE {names} IN SHARE MODE;" if names else ""


async def _copy_out(
    driver: Any, schema: str, listed: list[Any], tar: tarfile.TarFile
) -> list[dict[str, Any]]:
    """Each table's rows into the tar (through a file: a tar member needs its size first)."""
    tables = []
    with tempfile.TemporaryDirectory() as work:
        for table, columns in listed:
            data = Path(work) / table
            with writing_to(str(data)), _Sink(data) as sink:  # not the export's: a temporary
                status = await driver.copy_from_table(
                    table, schema_name=schema, columns=columns, output=sink, format="binary"
                )
            tar.add(data, arcname=f"{table}.copy")
            tables.append(
                {"name": table, "columns": list(columns), "rows": int(status.split()[-1])}
            )
    return tables


class _Sink:
    """A COPY's rows into ``path``. A write that fails (the disk full) is kept, the rest of
    the rows are read and dropped, and the error is raised once the COPY is over: a sink that
    raised mid-COPY had asyncpg cancel the statement, and where the server had already sent
    every row, wait for a cancellation that never came, the export hung with its transaction
    open."""

    def __init__(self, path: Path) -> None:
        self.error: OSError | None = None
        self.file = path.open("wb")

    async def __call__(self, data: bytes) -> None:
        if self.error is None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.file.write, data)
            except OSError as exc:
                self.error = exc

    def __enter__(self) -> "_Sink":
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.file.close()  # may fail too: the last of the buffer is written here
        finally:
            if self.error is not None and exc_info[0] is None:
                raise self.error


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


async def import_tenant(
    engine: AsyncEngine, source: Path | IO[bytes], slug: str, name: str | None = None
) -> Imported:
    """``source``: a file, or a seekable stream (the CLI spools stdin into one)."""
    with _open(source) as tar:
        manifest = _manifest(tar)
        revision = manifest["revision"]

        async def fill(driver: Any, schema: str) -> None:
            await _load(driver, schema, tar, manifest)

        new = await create_tenant(engine, slug, name or _files_name(manifest),
                                  revision=revision, fill=fill)  # fmt: skip
    rows = {t["name"]: t["rows"] for t in manifest["tables"]}
    if revision == head("tenant"):
        return Imported(new, revision, rows)
    async with engine.connect() as conn:
        tenant = await get_tenant(conn, slug)
    _, error = await serve_at_head(engine, tenant, revision)
    return Imported(new, revision, rows, error)


def _files_name(manifest: dict[str, Any]) -> str:
    """The name the file gives the tenant, where the registry takes it: the file may be
    another's, or older than the rules for names."""
    try:
        return display_name(manifest["name"])
    except TenancyError as exc:
        raise DumpError(
            f"the file's name for the tenant, {manifest['name']!r}, will not do: {exc}; give "
            "it one with --name"
        ) from None


def _path_or_stream(file: Path | IO[bytes]) -> tuple[Path | None, IO[bytes] | None]:
    """As ``tarfile.open`` takes either: a name, or an open file object."""
    return (file, None) if isinstance(file, Path) else (None, file)


def _open(source: Path | IO[bytes]) -> tarfile.TarFile:
    path, stream = _path_or_stream(source)
    label = path or "stdin"
    try:
        return tarfile.open(path, "r", fileobj=stream)
    except tarfile.TarError as exc:  # its message lists every compression it tried
        raise DumpError(f"{label}: not a tenant export (not a tar file)") from exc
    except OSError as exc:
        raise DumpError(f"{label}: cannot read it ({exc.strerror or first_line(exc)})") from exc


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    """The manifest, its shape checked before any of it is used."""
    try:
        manifest: dict[str, Any] = json.loads(_read(tar, MANIFEST))
        tables = manifest["tables"]
        shaped = isinstance(manifest["revision"], str) and isinstance(manifest["name"], str)
        shaped = shaped and all(
            isinstance(t["name"], str) and isinstance(t["rows"], int)
            and isinstance(t["columns"], list) and all(isinstance(c, str) for c in t["columns"])
            for t in tables
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise DumpError(f"{MANIFEST} is not readable ({first_line(exc)})") from exc
    if (manifest.get("format"), manifest.get("version")) != (FORMAT, VERSION):
        raise DumpError(f"not a {FORMAT} file of version {VERSION}")
    if not shaped:
        raise DumpError(f"{MANIFEST} does not have the shape of version {VERSION}")
    try:
        resolve("tenant", manifest["revision"])
    except UnknownRevisionError:  # exported by a newer build: its tables may not fit ours
        raise DumpError(
            f"the export is at tenant revision {manifest['revision']!r}, which this build does"
            f" not know (its head is {head('tenant')}): import it with a build that has it"
        ) from None
    return manifest


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        return _member(tar, name).read()
    except _DAMAGED as exc:
        raise _damaged(exc) from exc


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        member = tar.extractfile(name)  # the first lookup reads the whole file's headers
    except KeyError:
        member = None
    except _DAMAGED as exc:
        raise _damaged(exc) from exc
    if member is None:
        cut = " (an export ends with it: was the file cut short?)" if name == MANIFEST else ""
        raise DumpError(f"the file has no {name}{cut}")
    return member


def _damaged(exc: BaseException) -> DumpError:
    return DumpError(f"the file is damaged or cut short ({first_line(exc)})")


async def _load(driver: Any, schema: str, tar: tarfile.TarFile, manifest: dict[str, Any]) -> None:
    """Inside the new tenant's transaction: every table of the file, parents first."""
    await driver.execute(NO_STATEMENT_TIMEOUT)
    built = dict(await driver.fetch(_TABLES, schema))
    tables = {t["name"]: t for t in manifest["tables"]}
    if set(tables) != set(built):
        raise DumpError(f"its tables {sorted(tables)} are not its revision's {sorted(built)}")
    parents: TopologicalSorter[str] = TopologicalSorter({t: set() for t in built})
    for child, parent in await driver.fetch(_REFERENCES, schema):
        if child != parent:
            parents.add(child, parent)
    for table in parents.static_order():
        columns = tables[table]["columns"]
        if not set(columns) <= set(built[table]):
            raise DumpError(f"{table}: columns {columns} are not those of its revision")
        try:
            status = await driver.copy_to_table(table, schema_name=schema, columns=columns,
                                                source=_member(tar, f"{table}.copy"),
                                                format="binary")  # fmt: skip
        except DumpError:
            raise
        except Exception as exc:
            raise DumpError(f"{table}: {first_line(exc)}") from exc
        if int(status.split()[-1]) != tables[table]["rows"]:
            raise DumpError(f"{table}: {status} where the manifest says {tables[table]['rows']}")
    for table, column in await driver.fetch(_IDENTITIES, schema):
        qualified = f"{identifier(schema)}.{identifier(table)}"
        await driver.execute(
            f"SELECT setval(pg_get_serial_sequence('{qualified}', '{column}'), "  # noqa: S608
            f"coalesce(max({identifier(column)}), 0) + 1, false) FROM {qualified}"
        )

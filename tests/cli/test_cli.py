"""tenantctl through Typer's CliRunner, against the test database."""

import asyncio
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from cli.main import app
from tenantsvc.settings import Settings, get_settings
from tenantsvc.tenancy.migrator import head
from tests.command import TENANTCTL, leaf_commands, tenantctl_process

runner = CliRunner()


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point tenantctl (run in this process) at ``url``."""
    monkeypatch.setenv("TENANTSVC_DATABASE_URL", url)
    get_settings.cache_clear()


@pytest.fixture
def cli_env(
    database_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The CLI pointed at the test database, whose shared track ``engine`` migrated."""
    use_database(monkeypatch, database_url)
    yield
    get_settings.cache_clear()


def tenantctl(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    if code == 0 and "--json" in args:
        return json.loads(result.stdout)
    return result


def slug() -> str:
    return f"cli_{uuid.uuid4().hex[:8]}"


def _commands(group: typer.Typer, prefix: str = "") -> Iterator[tuple[str, str]]:
    for command in group.registered_commands:
        assert command.callback is not None
        yield prefix + (command.name or command.callback.__name__), command.callback.__doc__ or ""
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        yield from _commands(sub.typer_instance, f"{prefix}{sub.name} ")


def test_every_command_has_a_one_line_summary() -> None:
    """`tenantctl --help` lists each command by its docstring's first paragraph, line breaks
    kept: a summary over two lines is cut mid-sentence in the listing."""
    for name, doc in _commands(app):
        summary = inspect.cleandoc(doc).split("\n\n")[0]
        assert summary, f"{name} has no help"
        assert "\n" not in summary, f"{name}: {summary!r}"


def test_every_option_left_out_takes_its_default() -> None:
    """A default goes through the option's parser as a typed value, as Typer does when the
    option is not given: `keys rotate` without --grace raised a TypeError that way, while every
    test that rotated passed --grace."""
    for name, command in leaf_commands(typer.main.get_command(app)):
        context = typer.Context(command, info_name=name)
        for param in command.params:
            if not param.required:
                param.process_value(context, param.get_default(context))


def test_each_commands_help_flows_its_paragraphs() -> None:
    """Its docstring's lines are wrapped for the source, not for the terminal: a paragraph is
    shown as one run of text, rewrapped to the width, never broken where the source was."""
    runner = CliRunner()
    for name, doc in _commands(app):
        shown = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "400"}).output
        lines = {" ".join(line.strip(" │").split()) for line in shown.splitlines()}
        for paragraph in inspect.cleandoc(doc).split("\n\n"):
            assert " ".join(paragraph.replace("`", "").split()) in lines, f"{name}: {paragraph!r}"


@pytest.mark.usefixtures("cli_env")
def test_create_list_show_suspend_resume() -> None:
    name = slug()
    created = tenantctl("create", name, "--name", "CLI Co", "--json")
    assert created["slug"] == name
    assert created["schema"] == f"tenant_{name}"
    assert created["status"] == "active"
    assert created["api_key"].startswith("tsk_")
    listed = {t["slug"]: t for t in tenantctl("list", "--json")}
    assert listed[name]["name"] == "CLI Co"
    assert all("api_key" not in t for t in listed.values())
    assert tenantctl("suspend", name, "--json")["status"] == "suspended"
    assert name in {t["slug"] for t in tenantctl("list", "--status", "suspended", "--json")}
    assert tenantctl("resume", name, "--json")["status"] == "active"
    assert tenantctl("read-only", name, "--json")["status"] == "read_only"
    assert name in {t["slug"] for t in tenantctl("list", "--status", "read_only", "--json")}
    assert tenantctl("resume", name, "--json")["status"] == "active"
    assert tenantctl("show", name, "--json")["schema"] == f"tenant_{name}"


@pytest.mark.usefixtures("cli_env")
def test_create_several_in_one_process() -> None:
    """A line of JSON per tenant, each with its own key; the first failure stops the rest and
    says which were not created, while the ones before it stay, their keys printed."""
    first, second, third = slug(), slug(), slug()
    result = runner.invoke(app, ["create", first, second, "--json"])  # JSON Lines
    assert result.exit_code == 0, result.output
    created = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["slug"] for c in created] == [first, second]
    assert len({c["api_key"] for c in created}) == 2
    listed = {t["slug"] for t in tenantctl("list", "--json")}
    assert {first, second} <= listed
    failed = tenantctl("create", third, first, "fourth_never", code=1)
    assert f"created tenant {third}" in failed.stdout
    assert "API key (shown once): tsk_" in failed.stdout
    assert failed.stderr.strip().splitlines() == [
        f"error: tenant {first!r} already exists; not created: {first}, fourth_never"
    ]
    listed = {t["slug"] for t in tenantctl("list", "--json")}
    assert third in listed
    assert "fourth_never" not in listed


@pytest.mark.usefixtures("cli_env")
def test_create_several_refuses_bad_input_before_creating_any() -> None:
    names = [slug(), slug()]
    for args in ((*names, "Bad-Slug"), (*names, names[0]), (*names, "--name", "Both")):
        lines = tenantctl("create", *args, code=1).stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: ")
        if args[-1] == names[0]:  # which one: in a long list, "a slug is given twice" was not
            assert lines[0] == f"error: given twice: {names[0]}; nothing created"
    assert not set(names) & {t["slug"] for t in tenantctl("list", "--json")}


@pytest.mark.usefixtures("cli_env")
def test_lifecycle_commands_take_several_tenants() -> None:
    """`create` took many slugs while `drop` took one: a team tearing down the 500 tenants it
    made in one process paid 500 process starts. Each command now takes several, each tenant
    in its own transaction; an unknown slug anywhere changes none, and the first failure
    stops the rest and names them."""
    names = [slug(), slug(), slug()]
    tenantctl("create", *names)

    def statuses() -> list[str]:
        found = {t["slug"]: t["status"] for t in tenantctl("list", "--json")}
        return [found.get(name, "gone") for name in names]

    said = tenantctl("suspend", *names).stdout.splitlines()
    assert said == [f"tenant {name} is suspended" for name in names]
    assert statuses() == ["suspended"] * 3
    refused = tenantctl("resume", names[0], "nope_one", names[1], "nope_two", code=1)
    assert refused.stderr == "error: unknown tenant(s): nope_one, nope_two; nothing changed\n"
    assert statuses() == ["suspended"] * 3
    resumed = runner.invoke(app, ["resume", *names, "--json"]).stdout.splitlines()  # JSON Lines
    assert [json.loads(line)["status"] for line in resumed] == ["active"] * 3
    tenantctl("read-only", names[0], names[2])
    assert statuses() == ["read_only", "active", "read_only"]
    tenantctl("drop", names[0], names[1], "--yes")
    assert statuses() == ["archived", "archived", "read_only"]
    stopped = tenantctl("restore", names[0], names[2], names[1], code=1)
    assert stopped.stdout == f"tenant {names[0]}: restored\n"
    assert stopped.stderr == (
        f"error: tenant {names[2]!r} is not archived (it is read_only); not restored: "
        f"{names[2]}, {names[1]}\n"
    )
    assert statuses() == ["active", "archived", "read_only"]
    assert tenantctl("drop", *names, "--purge", code=1).stderr.endswith(
        "error: not confirmed (pass --yes to skip the question)\n"
    )
    tenantctl("drop", *names, "--purge", "--yes")
    assert statuses() == ["gone"] * 3


@pytest.mark.usefixtures("cli_env")
def test_usage_lists_tenants_biggest_first() -> None:
    name = slug()
    tenantctl("create", name)
    measured = {u["slug"]: u for u in tenantctl("usage", "--json")}
    assert measured[name]["rows"] == 0
    assert measured[name]["total_bytes"] == (
        measured[name]["table_bytes"] + measured[name]["index_bytes"]
    )
    sizes = [u["total_bytes"] for u in measured.values()]
    assert sizes == sorted(sizes, reverse=True)
    assert len(tenantctl("usage", "--top", "1", "--json")) == 1
    assert name in tenantctl("usage").stdout
    assert (measured[name]["reads"], measured[name]["writes"]) == (0, 0)
    assert "reads 7d" in tenantctl("usage", "--days", "7", "--by", "requests").stdout
    assert tenantctl("requests", name, "--json") == []  # no requests yet (counted: test_activity)


@pytest.mark.usefixtures("cli_env")
def test_errors_are_one_line_and_nonzero() -> None:
    name = slug()
    tenantctl("create", name)
    for args in (("create", name), ("create", "Bad-Slug"), ("show", "nobody_here"),
                 ("suspend", "nobody_here"), ("keys", "revoke", name, "999999"),
                 ("create", slug(), "--name", "x" * 201), ("migrate", name, "--to", "nosuchrev"),
                 ("migrate-all", "--to", "nosuchrev"), ("list", "--status", "bogus"),
                 ("usage", "--status", "bogus"), ("usage", "--by", "bogus"),
                 ("requests", "nobody_here"), ("isolate",), ("isolate", "nobody_here"),
                 ("isolate", name, "--all"),
                 ("migrate-all", "--status", "bogus"),
                 ("migrate-all", "--dry-run", "--tenant", "nobody_here"),
                 ("migrate-all", "--tenant", name, "--tenant", "nobody_here")):  # fmt: skip
        result = tenantctl(*args, code=1)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr


def test_a_bad_target_or_status_changes_nothing(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before the shared track runs: bad input to a migration leaves the database as
    it was (here, empty: not even the registry)."""
    use_database(monkeypatch, empty_database_url)
    try:
        for args in (("migrate-all", "--to", "nosuchrev"), ("migrate-all", "--status", "bogus"),
                     ("migrate", "acme", "--to", "nosuchrev")):  # fmt: skip
            assert "error: " in tenantctl(*args, code=1).stderr
        assert "run `tenantctl migrate-all` first" in tenantctl("list", code=1).stderr
    finally:
        get_settings.cache_clear()


def test_database_down_is_one_line_that_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which database, since "[Errno 111] Connect call failed" alone does not say which
    setting to look at; its password masked."""
    url = "postgresql+asyncpg://ops:s3cret@127.0.0.1:9/none"
    monkeypatch.setenv("TENANTSVC_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        result = tenantctl("list", code=1)
    finally:
        get_settings.cache_clear()
    assert result.stderr.startswith(
        "error: cannot reach the database at postgresql+asyncpg://ops:***@127.0.0.1:9/none "
        "(TENANTSVC_DATABASE_URL): [Errno 111]"
    ), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [("create",), ("create", "--bogus", "x"), ("keys", "revoke", "acme", "abc"),
     ("keys", "revoke", "acme", "0"), ("migrate-all", "--concurrency", "0"),
     ("migrate-all", "--lock-timeout-ms", "3000000000"), ("nosuchcmd",),
     ("keys",), ("keys", "create", "acme", "--expires-in", "0d"),
     ("keys", "create", "acme", "--expires-in", "1y"),
     ("keys", "create", "acme", "--expires-in", "999999w"),
     ("keys", "rotate", "acme", "--grace", "5219w"), ("history", "--since", "36526d"),
     ("serve", "--port", "99999"),
     ("serve", "--port", "0"), ("serve", "--workers", "0"), ("usage", "--top", "0"),
     ("usage", "--top", str(2**31)), ("psql",)],
    ids=" ".join,
)  # fmt: skip
def test_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    """The installed command (not CliRunner): Typer would frame these in a multi-line panel."""
    result = tenantctl_process(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""


def test_embedded_default_error_is_one_line(tmp_path: Path) -> None:
    """No URL and no XDG_RUNTIME_DIR (a root shell, cron, CI): the embedded server starts,
    and an error on it is still the one line, without the runtime-directory warning. Where
    there was no embedded database yet (a fresh clone, another directory), the command says
    it made one, and gave it the registry: the tenant is unknown, not the registry's table."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TENANTSVC_") and k != "XDG_RUNTIME_DIR"}  # fmt: skip
    env["TENANTSVC_EMBEDDED_DATA_DIR"] = str(tmp_path / "pgdata")
    result = tenantctl_process("show", "nobody_here", env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "note: TENANTSVC_DATABASE_URL is unset: created an embedded database in "
        f"{tmp_path / 'pgdata'}",
        "error: unknown tenant 'nobody_here'",
    ]
    again = tenantctl_process("show", "nobody_here", env=env, timeout=120)
    assert again.stderr.splitlines() == ["error: unknown tenant 'nobody_here'"]
    created = tenantctl_process("create", "first_one", env=env, timeout=120)
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize("command", [("list",), ("serve",), ("psql", "acme")], ids=" ".join)
def test_a_bad_setting_is_one_line_naming_the_variable(command: tuple[str, ...]) -> None:
    env = {**os.environ, "TENANTSVC_POOL_SIZE": "abc", "TENANTSVC_ACTOR": "\u043a\u0442\u043e"}
    result = tenantctl_process(*command, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: bad setting TENANTSVC_POOL_SIZE: "), lines
    assert "; TENANTSVC_ACTOR: " in lines[0]


def _limited_to_8_kib(
    *args: str, env: dict[str, str], stdin: Any = None
) -> subprocess.CompletedProcess[str]:
    """tenantctl with its files limited to 8 KiB (RLIMIT_FSIZE): a write past it fails with
    EFBIG, as one on a full disk does with ENOSPC. Set in a launcher that then becomes
    tenantctl: ``preexec_fn`` may deadlock a child of a process with threads."""
    launcher = ("import os, resource, sys; "
                "resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192)); "
                "os.execv(sys.argv[1], sys.argv[1:])")  # fmt: skip
    return subprocess.run([sys.executable, "-c", launcher, *TENANTCTL, *args], env=env,
                          stdin=stdin, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def test_an_error_writing_an_export_is_not_called_the_database(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """A file that cannot be written, and a pipe whose reader is gone, each said "cannot
    reach the database", then "database: [Errno 32] Broken pipe"; a disk full, or a file
    past its size limit, "database: [Errno 28] No space left on device"."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    name = slug()
    assert tenantctl_process("create", name, env=env).returncode == 0
    unwritable = tenantctl_process("export", name, "/proc/an.tar", env=env)
    assert (unwritable.returncode, unwritable.stderr) == (
        1,
        "error: /proc/an.tar: No such file or directory\n",
    )
    with open("/dev/full", "wb") as full:  # every write: ENOSPC
        no_space = subprocess.run(
            [*TENANTCTL, "export", name, "-"], env=env, stdout=full, stderr=subprocess.PIPE,
            text=True, timeout=60, check=False,
        )  # fmt: skip
    assert (no_space.returncode, no_space.stderr) == (
        1,
        "error: <stdout>: No space left on device\n",
    )
    target = tmp_path / "limited.tar"  # an export is at least one 10 KiB tar record
    limited = _limited_to_8_kib("export", name, str(target), env=env)
    assert (limited.returncode, limited.stderr) == (1, f"error: {target}: File too large\n")
    assert os.listdir(tmp_path) == []
    rows = "INSERT INTO products (name, price_cents, stock) SELECT 'p' || g, 1, 1 " \
           "FROM generate_series(1, 500) g"  # fmt: skip
    assert tenantctl_process("psql", name, "-c", rows, env=env).returncode == 0
    # Past the limit now: a table's temporary copy, named as such (not the export, not /tmp's).
    limited = _limited_to_8_kib("export", name, str(target), env=env)
    assert re.fullmatch(r"error: /\S+/products: File too large\n", limited.stderr), limited.stderr
    assert os.listdir(tmp_path) == []
    # An import from stdin keeps it in a temporary file first (a tar's manifest comes last).
    assert tenantctl_process("export", name, str(target), env=env).returncode == 0
    with target.open("rb") as export:
        spooled = _limited_to_8_kib("import", "-", slug(), env=env, stdin=export)
    assert (spooled.returncode, spooled.stderr) == (
        1,
        f"error: {tempfile.gettempdir()}: File too large\n",
    )
    closed = subprocess.Popen([*TENANTCTL, "export", name, "-"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert closed.stdout is not None
    closed.stdout.close()  # the reader is gone before the first byte
    _, stderr = closed.communicate(timeout=60)
    assert (closed.returncode, stderr) == (
        1,
        "error: the output was closed before all of it was written\n",
    )


async def test_an_export_killed_midway_leaves_no_file_under_its_name(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """`export acme acme.tar && drop acme --purge` is how a tenant's rows are kept. Written
    straight to its name, a kill -9 (or a crash) mid-way left a truncated acme.tar there, that
    looked like an export; now the name appears only once the file is whole and on disk."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    name = slug()
    assert tenantctl_process("create", name, env=env).returncode == 0
    async with engine.begin() as conn:
        await conn.execute(text(
            f"INSERT INTO tenant_{name}.products (name, price_cents, stock) "
            "SELECT 'p' || i, 1, 1 FROM generate_series(1, 50000) AS i"
        ))  # fmt: skip
    target = tmp_path / "kept.tar"
    victim = await asyncio.create_subprocess_exec(*TENANTCTL, "export", name, str(target), env=env)
    while not os.listdir(tmp_path):  # being written
        assert victim.returncode is None, "the export ended before it could be killed"
        await asyncio.sleep(0.002)
    victim.kill()
    await victim.wait()
    assert not target.exists()
    whole = tenantctl_process("export", name, str(target), env=env)
    assert whole.returncode == 0, whole.stderr
    with tarfile.open(target) as tar:
        assert "manifest.json" in tar.getnames()
    taken = tenantctl_process("export", name, str(target), env=env)
    assert (taken.returncode, taken.stderr) == (
        1,
        f"error: {target} exists: choose a new file (an export never overwrites)\n",
    )


def test_ctrl_c_in_a_batch_says_what_it_did_not_do(database_url: str, engine: AsyncEngine) -> None:
    """It was silent, with exit 130: the operator had to work out from the last line printed
    which tenants were left. Each one not named exists; none named does, but for the one in
    flight, rolled back unless it had just committed."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    prefix = slug()
    slugs = [f"{prefix}_{i}" for i in range(300)]
    batch = subprocess.Popen([*TENANTCTL, "create", *slugs, "--json"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert batch.stdout is not None
    made = [json.loads(batch.stdout.readline())["slug"] for _ in range(3)]
    batch.send_signal(signal.SIGINT)
    rest, stderr = batch.communicate(timeout=60)
    made += [json.loads(line)["slug"] for line in rest.splitlines()]
    assert batch.returncode == 130, stderr
    assert stderr.startswith("error: interrupted; not created: "), stderr
    left = stderr.removeprefix("error: interrupted; not created: ").strip().split(", ")
    assert made + left == slugs
    listed = tenantctl_process("list", "--json", env=env)
    exist = {t["slug"] for t in json.loads(listed.stdout)} & set(slugs)
    # The one in flight may have committed just as the interrupt came, before it was printed.
    assert exist - {left[0]} == set(made)


@pytest.mark.parametrize(
    ("stop", "as_json"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "ctrl-c-json", "sigterm"],
)
async def test_ctrl_c_or_sigterm_in_migrate_all_says_how_far_it_got(
    database_url: str, engine: AsyncEngine, stop: signal.Signals, as_json: bool
) -> None:
    """It said only "interrupted", and --json left half a document that did not parse. Each
    tenant commits on its own: the count it gives are at head (one more, at most, if the one
    in flight had just committed), and a re-run does the rest. SIGTERM (a Job past its
    deadline, a container stopped) ended the process on the spot, saying nothing: it is
    taken as Ctrl-C is."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
    prefix = slug()
    slugs = [f"{prefix}_{i}" for i in range(50)]
    only = [arg for s in slugs for arg in ("--tenant", s)]
    assert tenantctl_process("create", *slugs, env=env).returncode == 0
    assert tenantctl_process("migrate-all", "--to", "base", *only, env=env).returncode == 0
    at_head = text(
        "SELECT count(*) FROM tenantsvc.tenant_revisions r JOIN tenantsvc.tenants t "
        "ON t.id = r.tenant_id WHERE t.slug LIKE :prefix AND r.revision = :head"
    ).bindparams(prefix=f"{prefix}\\_%", head=head("tenant"))

    async def migrated() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(at_head))

    fleet = await asyncio.create_subprocess_exec(
        *TENANTCTL, "migrate-all", *only, "--concurrency", "1", *(["--json"] if as_json else []),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    while await migrated() < 3:
        assert fleet.returncode is None, await fleet.communicate()
        await asyncio.sleep(0.01)
    fleet.send_signal(stop)
    out, said_bytes = await asyncio.wait_for(fleet.communicate(), timeout=60)
    stderr = said_bytes.decode()
    word, code = ("interrupted", 130) if stop == signal.SIGINT else ("terminated", 143)
    assert fleet.returncode == code, stderr
    said = re.fullmatch(
        rf"error: {word}; (\d+) of 50 tenants behind were migrated \(and any in flight that "
        r"had just committed\), the others are where they were: run `tenantctl migrate-all` "
        r"again to resume\n",
        stderr,
    )
    assert said is not None, stderr
    told, done = int(said[1]), await migrated()
    assert 3 <= told <= done <= told + 1 < 50
    if as_json:
        document = json.loads(out)
        assert document["aborted"] == {"migrated": told, "behind": 50}
        assert len(document["tenants"]) == told
    rerun = tenantctl_process("migrate-all", *only, env=env)
    assert rerun.stdout.startswith(f"50 tenants: {50 - done} migrated to {head('tenant')}, "
                                   f"{done} already there, 0 failed"), rerun  # fmt: skip


def test_a_bad_database_url_is_one_line_that_hides_its_password() -> None:
    env = {**os.environ, "TENANTSVC_DATABASE_URL": "postgresql+psycopg2://ops:s3cret@db/app"}
    result = tenantctl_process("list", env=env)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == (
        "error: bad setting TENANTSVC_DATABASE_URL: use postgresql+asyncpg://user:password@host"
        ":port/database (got 'postgresql+psycopg2://ops:***@db/app')\n"
    )


@pytest.mark.usefixtures("cli_env")
def test_isolate_completes_a_tenants_role() -> None:
    name = slug()
    role = tenantctl("create", name, "--json")["role"]
    assert role.startswith("tenantsvc_")
    assert tenantctl("isolate", name, "--json") == {"isolated": [name]}
    assert tenantctl("show", name, "--json")["role"] == role  # the same role, completed
    assert "every tenant runs as its own role now" in tenantctl("isolate", "--all").stdout


@pytest.mark.usefixtures("cli_env")
def test_keys_create_list_revoke() -> None:
    name = slug()
    tenantctl("create", name)
    new = tenantctl("keys", "create", name, "--json")
    keys = tenantctl("keys", "list", name, "--json")
    assert [k["id"] for k in keys][-1] == new["key_id"]
    assert all(k["revoked_at"] is None and k["last_used_at"] is None for k in keys)
    assert new["api_key"] not in json.dumps(keys)
    tenantctl("keys", "revoke", name, str(new["key_id"]))
    revoked = {k["id"]: k for k in tenantctl("keys", "list", name, "--json")}
    assert revoked[new["key_id"]]["revoked_at"] is not None
    again = tenantctl("keys", "revoke", name, str(new["key_id"]), "--json")
    assert again["revoked_before"] == revoked[new["key_id"]]["revoked_at"]  # kept, not moved
    lasting = tenantctl("keys", "create", name, "--expires-in", "90d", "--json")
    listed = {k["id"]: k for k in tenantctl("keys", "list", name, "--json")}
    expires = datetime.fromisoformat(listed[lasting["key_id"]]["expires_at"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)
    longest = tenantctl("keys", "create", name, "--expires-in", "36525d").stdout
    assert ", expires in 36525 days (shown once)" in longest, longest
    table = tenantctl("keys", "list", name).stdout
    assert "active, expires" in table
    assert "never" in table  # last used


@pytest.mark.usefixtures("cli_env")
def test_revoking_the_last_live_key_says_the_tenant_is_locked_out() -> None:
    """Meant, for a key that leaked, but the operator should know: every request of the
    tenant's clients is refused from now on. It was a plain "revoked key N"."""
    name = slug()
    first = tenantctl("create", name, "--json")["key_id"]
    second = tenantctl("keys", "create", name, "--json")["key_id"]
    one_left = tenantctl("keys", "revoke", name, str(first))
    assert one_left.stderr == ""
    assert tenantctl("keys", "revoke", name, str(second), "--json")["live_keys"] == 0
    locked = tenantctl("keys", "revoke", name, str(second))  # again: still none
    assert locked.stderr == (
        f"note: {name} has no live API key now: every request of its clients is refused "
        f"until `tenantctl keys create {name}`\n"
    )


@pytest.mark.usefixtures("cli_env")
def test_keys_rotate_gives_the_old_keys_a_grace_period() -> None:
    name = slug()
    first = tenantctl("create", name, "--json")["key_id"]
    soon = tenantctl("keys", "create", name, "--expires-in", "5m", "--json")["key_id"]
    gone = tenantctl("keys", "create", name, "--json")["key_id"]
    tenantctl("keys", "revoke", name, str(gone))
    rotated = tenantctl("keys", "rotate", name, "--grace", "2h", "--expires-in", "90d", "--json")
    assert rotated["ending"] == [first]  # sooner expiries stay; revoked keys stay revoked
    keys = {k["id"]: k for k in tenantctl("keys", "list", name, "--json")}
    ends = {i: datetime.fromisoformat(keys[i]["expires_at"]) - datetime.now(UTC)
            for i in (first, soon, rotated["key_id"])}  # fmt: skip
    assert timedelta(minutes=119) < ends[first] <= timedelta(hours=2)
    assert keys[first]["expires_at"] == rotated["ending_at"]
    assert ends[soon] <= timedelta(minutes=5)
    assert ends[rotated["key_id"]] > timedelta(days=89)
    assert keys[gone]["revoked_at"] is not None
    trail = tenantctl("history", name, "--json")
    assert (trail[0]["action"], trail[0]["detail"]["key_id"]) == ("key_expiry", first)
    tenantctl("keys", "rotate", name, "--grace", "0h", code=2)
    # Without --grace, its default: the hour the help promises (it raised a TypeError).
    plain = tenantctl("keys", "rotate", name, "--json")
    left = datetime.fromisoformat(plain["ending_at"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)


@pytest.mark.usefixtures("cli_env")
def test_migrate_one_and_all() -> None:
    name = slug()
    tenantctl("create", name)
    one = tenantctl("migrate", name, "--json")
    assert one["tenants"] == []  # already at head: planned out, untouched
    assert one["summary"] == {
        "target": head("tenant"),
        "total": 1,
        "migrated": 0,
        "skipped": 1,
        "failed": 0,
        "lock_retries": 0,
        "later": 0,
    }
    everyone = tenantctl("migrate-all", "--json")
    assert everyone["summary"]["failed"] == 0
    assert everyone["summary"]["total"] >= 1
    tenantctl("migrate", "nobody_here", code=1)


def test_a_bad_metrics_token_is_refused_without_showing_it() -> None:
    env = {**os.environ, "TENANTSVC_METRICS_TOKEN": "hunter2"}
    result = tenantctl_process("list", env=env)
    assert (result.returncode, result.stderr) == (1, "error: bad setting TENANTSVC_METRICS_TOKEN: "
                                                  "use a token of at least 16 characters "
                                                  "(value not shown)\n")  # fmt: skip
    assert Settings(metrics_token="").metrics_token is None  # compose's default: metrics off


def _completed(words: str, env: dict[str, str]) -> list[str]:
    """What the shell's TAB offers after ``words`` (bash's protocol, as the installed script)."""
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    shell = {**env, "COMP_WORDS": words, "COMP_CWORD": cword,
             "_TENANTCTL_COMPLETE": "complete_bash"}  # fmt: skip
    result = tenantctl_process(env=shell)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.split()


@pytest.mark.usefixtures("cli_env")
def test_tab_completes_tenant_slugs_and_never_starts_a_server(tmp_path: Path) -> None:
    prefix = f"tab_{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}_{i}" for i in range(2)]
    tenantctl("create", *names)
    assert _completed(f"tenantctl show {prefix}", dict(os.environ)) == names
    assert _completed(f"tenantctl keys rotate {prefix}", dict(os.environ)) == names
    assert _completed(f"tenantctl clone {prefix}", dict(os.environ)) == names  # the source
    assert _completed("tenantctl create tab_", dict(os.environ)) == []  # a new one: no names
    down = {**os.environ, "TENANTSVC_DATABASE_URL": "postgresql://x@127.0.0.1:9/none"}
    assert _completed("tenantctl show ", down) == []  # nothing, and no traceback
    idle = {k: v for k, v in os.environ.items() if k != "TENANTSVC_DATABASE_URL"}
    idle["TENANTSVC_EMBEDDED_DATA_DIR"] = str(tmp_path / "pgdata")
    assert _completed("tenantctl show ", idle) == []
    assert not (tmp_path / "pgdata").exists()  # a TAB started no embedded server


def test_settings_shows_what_is_in_effect_and_no_secret() -> None:
    token, password = "a-scraper-token-0123", "s3cret-pw"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTSVC_")}
    env |= {"TENANTSVC_POOL_SIZE": "7", "TENANTSVC_METRICS_TOKEN": token,
            "TENANTSVC_DATABASE_URL": f"postgresql://ops:{password}@db/app",
            "TENANTSVC_READ_DATABASE_URL": f"postgres://r:{password}@r1/app"}  # fmt: skip
    result = tenantctl_process("settings", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout
    assert password not in result.stdout
    shown = {s["setting"]: (s["value"], s["from"]) for s in json.loads(result.stdout)}
    assert len(shown) == len(Settings.model_fields)  # every one, none left out
    assert shown["TENANTSVC_POOL_SIZE"] == ("7", "environment")
    assert shown["TENANTSVC_MAX_OVERFLOW"] == ("10", "default")
    assert shown["TENANTSVC_METRICS_TOKEN"] == ("set (not shown)", "environment")
    assert shown["TENANTSVC_DATABASE_URL"][0] == "postgresql+asyncpg://ops:***@db/app"
    assert shown["TENANTSVC_READ_DATABASE_URL"][0] == "postgresql+asyncpg://r:***@r1/app"
    assert shown["TENANTSVC_TENANT_MAX_CONNECTIONS"][0] == "unset: 12 (3/4 of the pool)"
    table = tenantctl_process("settings", env={**env, "TENANTSVC_POOL_SIZE": "x"})
    assert (table.returncode, table.stderr.count("\n")) == (1, 1)  # a bad one: its one line


def test_version_names_the_build_and_the_heads_it_carries() -> None:
    """Which migrations a build brings decides what `migrate-all` will do to the fleet: the
    version alone does not say."""
    done = tenantctl_process("--version")
    assert done.returncode == 0, done.stderr
    heads = f"tenant {head('tenant')}, shared {head('shared')}"
    assert done.stdout == f"tenantctl {version('tenantsvc')} (heads: {heads})\n"

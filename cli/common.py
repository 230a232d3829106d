"""What every command shares: the engine at the command edge, one-line errors, JSON output."""

import asyncio
import json
import os
import re
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


@asynccontextmanager
async def engine_for_cli(pool_size: int = 2) -> AsyncIterator[Any]:
    from tenantsvc.db.embedded import ensure_database_url, initialised
    from tenantsvc.db.engine import create_engine
    from tenantsvc.settings import get_settings

    settings = get_settings()
    fresh = settings.database_url is None and not initialised(settings.embedded_data_dir)
    settings = ensure_database_url(settings)
    settings = settings.model_copy(update={"pool_size": pool_size, "max_overflow": 0})
    engine = create_engine(settings, application_name=f"tenantctl {settings.actor or _whoami()}")
    try:
        await _reachable(engine, get_settings().database_url)
        if fresh:
            await _set_up_embedded(engine, settings.embedded_data_dir)
        yield engine
    finally:
        await engine.dispose()


async def _set_up_embedded(engine: Any, data_dir: Any) -> None:
    """A command run where no embedded database was yet (a fresh clone before `make run`, or
    another directory: the default lives in ./.tenantsvc) says that it made one, and gives it
    the registry, so that `create` works there rather than failing on a missing table."""
    from tenantsvc.tenancy.fleet import migrate_shared

    typer.echo(f"note: TENANTSVC_DATABASE_URL is unset: created an embedded database in "
               f"{data_dir.resolve()}", err=True)  # fmt: skip
    await migrate_shared(engine)


def _whoami() -> str:
    """``user@host``, as the audit trail records a tenantctl change (``TENANTSVC_ACTOR``
    names someone else). PostgreSQL keeps 63 bytes of an application_name."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:50]


_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_LONGEST = timedelta(days=36_525)


def duration(value: str | timedelta) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w``: a key's life, a grace period, how far back. Typer
    hands an option's default through the parser too (``keys rotate``'s one hour)."""
    if isinstance(value, timedelta):
        return value
    found = _DURATION.fullmatch(value)
    span = found and timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if not span or span > _LONGEST:  # a key's end past year 9999 is one no client can read
        raise typer.BadParameter(
            f"{value!r}: use a whole number from 1 and m, h, d or w (90d, 12h), up to 100 years"
        )
    return span


def spoken(span: timedelta) -> str:
    """A ``duration`` said back: ``2 days``, ``12 hours``, ``1 minute``."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


INTERRUPTED = 130  # 128 + SIGINT, as shells report it
TERMINATED = 143  # 128 + SIGTERM


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _no_context() -> str:
    return ""


def run(work: Callable[[], Awaitable[T]], context: Callable[[], str] = _no_context) -> T:
    """Run a command's coroutine; known failures become one line on stderr and exit 1, ending
    with what ``context()`` then says (what a batch left undone)."""
    from asyncpg import PostgresError  # raised bare where a command uses the driver itself
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    from tenantsvc.tenancy.errors import TenancyError, first_line
    from tenantsvc.tenancy.slugs import InvalidSlugError

    try:
        with _sigterm_as_ctrl_c() as terminated:
            return asyncio.run(work())  # type: ignore[arg-type]
    except KeyboardInterrupt:  # Ctrl-C: what a batch had not done yet, where it was silent
        said, code = ("terminated", TERMINATED) if terminated else ("interrupted", INTERRUPTED)
        typer.echo(f"error: {said}{context()}", err=True)
        raise typer.Exit(code) from None
    except (TenancyError, InvalidSlugError) as exc:
        raise fail(str(exc) + context()) from None
    except ValidationError as exc:  # the settings, read from the environment
        raise fail(bad_settings(exc) + context()) from None
    except BrokenPipeError:  # ``export -`` into a pipe whose reader is gone
        raise fail("the output was closed before all of it was written" + context()) from None
    except OSError as exc:
        if exc.filename is not None:  # a file the command reads or writes
            raise fail(f"{exc.filename}: {exc.strerror}{context()}") from None
        raise fail(f"database: {first_line(exc)}{context()}") from None  # a connection lost
    except (DBAPIError, PostgresError) as exc:
        raise fail(f"database: {_with_hint(exc)}{context()}") from None


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[list[int]]:
    """SIGTERM (a Job past its deadline, a container stopped, ``kill``) ends a command as Ctrl-C
    does: the transaction in flight rolled back, what a batch did and left said, a partial
    export removed. Python's default ended the process on the spot and said nothing. Yields
    the signals taken (empty: none)."""
    import signal
    import threading

    taken: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach only it
        yield taken
        return

    def as_ctrl_c(signum: int, frame: object) -> None:
        taken.append(signum)
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
            raise KeyboardInterrupt  # started with Ctrl-C ignored (``nohup``, ``&``)
        signal.raise_signal(signal.SIGINT)  # asyncio.run cancels the command, as for Ctrl-C

    previous = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        yield taken
    finally:
        signal.signal(signal.SIGTERM, previous)


def _with_hint(exc: BaseException) -> str:
    """The database's message, and what to do about it where that is not in it."""
    from tenantsvc.db.errors import READ_ONLY_SQL_TRANSACTION, sqlstate
    from tenantsvc.tenancy.errors import first_line

    message = first_line(exc)
    if 'relation "tenantsvc.' in message:
        return message + " (run `tenantctl migrate-all` first)"
    if sqlstate(exc) == READ_ONLY_SQL_TRANSACTION:
        return message + (" (the database takes no writes: a standby, or "
                          "default_transaction_read_only is on; point TENANTSVC_DATABASE_URL "
                          "at the primary)")  # fmt: skip
    return message


async def _reachable(engine: Any, url: str | None) -> None:
    """The first connection, made at once: a database that cannot be reached is named in the
    one line, its password masked, where "[Errno 111] Connect call failed" alone did not say
    which setting to look at (and an error writing a file must not read as this one)."""
    from tenantsvc.tenancy.errors import TenancyError, first_line

    try:
        async with engine.connect():
            pass
    except OSError as exc:  # no socket there, connection refused, an unknown host name
        where = f" at {_masked(url)} (TENANTSVC_DATABASE_URL)" if url else " (the embedded one)"
        raise TenancyError(f"cannot reach the database{where}: {first_line(exc)}") from exc


# The password of a URL's user: never echoed back, even in an error about that URL.
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def _shown(value: object) -> str:
    return repr(_masked(value))


def _masked(value: object) -> str:
    return _PASSWORD.sub(r"\1***@", str(value))


# Settings whose value is a secret: an error names them, never what they were set to.
_SECRETS = {"metrics_token"}


def bad_settings(exc: Any) -> str:
    """pydantic's report on the settings as one line naming the variables to fix."""
    problems = [f"TENANTSVC_{'_'.join(map(str, e['loc'])).upper()}: "
                f"{e['msg'].removeprefix('Value error, ')} {_got(e)}"
                for e in exc.errors()]  # fmt: skip
    return "bad setting " + "; ".join(problems)


def _got(error: Any) -> str:
    return "(value not shown)" if error["loc"][0] in _SECRETS else f"(got {_shown(error['input'])})"


def hidden(name: str, value: Any) -> str:
    """A setting's value as it may be shown: a secret as whether it is set, a URL's password
    masked, unset as ``unset``."""
    if value is None:
        return "unset"
    if name in _SECRETS:
        return "set (not shown)"
    return _masked(value)


def print_table(
    headings: Sequence[str],
    rows: Iterable[Sequence[str]],
    right: Collection[str] = (),
    empty: str = "none",
) -> None:
    """A table for people on stdout, the ``right`` columns (numbers) right-aligned. On a
    terminal it fits the terminal's width; piped (to grep, to a file), a row stays one line
    however wide. rich is imported only when a table is printed, so ``tenantctl --help``
    stays fast. Without rows, the line ``empty`` says so: a frame with no rows said less.
    Cells are shown as written (``wording.shown``): they hold names others chose."""
    rows = list(rows)
    if not rows:
        typer.echo(empty)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tenantsvc.wording import shown

    table = Table()
    for heading in headings:
        table.add_column(heading, justify="right" if heading in right else "left")
    for row in rows:  # as Text, not markup: a name's "[red]" is its own, not rich's
        table.add_row(*(Text(shown(cell)) for cell in row))
    Console(width=None if sys.stdout.isatty() else 10_000).print(table)


def print_json(data: Any, err: bool = False) -> None:
    """``err``: to stderr, when stdout carries the command's data (``export -``)."""
    (sys.stderr if err else sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")

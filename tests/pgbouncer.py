"""A real PgBouncer in transaction pooling mode in front of the test PostgreSQL."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tenantsvc.testing.postgres import free_port


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed: .ci/run installs the Debian package")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


def _server_side(admin_url: str) -> tuple[str, int, str | None]:
    """(host or socket directory, port, the system user that may reach it)."""
    url = make_url(admin_url)
    host = url.query.get("host") or url.host or "127.0.0.1"
    host = host if isinstance(host, str) else host[0]
    owner = None
    if host.startswith("/") and os.geteuid() == 0:
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name  # the socket lives in a private dir
    return host, url.port or 5432, owner


@contextmanager
def pgbouncer(admin_url: str, database: str, pool_size: int, scram: bool = False) -> Iterator[str]:
    """Yields an asyncpg URL to ``database`` through PgBouncer (transaction mode), as
    postgres. With ``scram``, as production runs it: clients log in as their own role with
    its password, which PgBouncer checks (SCRAM-SHA-256) against the server's verifier
    (``auth_query`` as postgres), and the server sees that role."""
    binary = pgbouncer_binary()
    host, port, owner = _server_side(admin_url)
    run_as = owner or ("postgres" if os.geteuid() == 0 else None)
    workdir = Path(tempfile.mkdtemp(prefix="tenantsvc-pgbouncer-"))
    listen = free_port()
    as_user = "" if scram else " user=postgres"
    login = "auth_type = scram-sha-256\nauth_user = postgres" if scram else "auth_type = any"
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
{database} = host={host} port={port} dbname={database}{as_user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
{login}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
"""
    )
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(workdir, user.pw_uid, user.pw_gid)
    command = [binary, *(["-u", run_as] if run_as and os.geteuid() == 0 else []), "pgbouncer.ini"]
    bouncer = _Supervised(command, workdir)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
                break
            except OSError:
                if bouncer.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {bouncer.log()}") from None
                time.sleep(0.05)
        bouncer.start()
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{listen}/{database}"
    finally:
        bouncer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for exit in bouncer.exits:  # told when a test failed too
            warnings.warn(f"PgBouncer exited and was started again: {exit}", stacklevel=1)


class _Supervised(threading.Thread):
    """PgBouncer, started again whenever it exits, as its service manager does where it runs
    for real. Debian 12's 1.18 (what ``.ci/run`` installs) aborts now and then under a load of
    cancel requests and killed server connections (pgbouncer#801, #822, #904; fixed by #927 in
    August 2023), which the leak fuzz sends by the hundred. Left down, it failed the clean
    round after the faults, which checks that the service heals, not PgBouncer. Each restart
    is a warning in the test run, with the end of PgBouncer's log."""

    def __init__(self, command: list[str], workdir: Path) -> None:
        super().__init__(daemon=True)
        self.command, self.workdir = command, workdir
        self.stopping = threading.Event()
        self.exits: list[str] = []
        self.process = self._launch()

    def _launch(self) -> "subprocess.Popen[bytes]":
        (self.workdir / "pgbouncer.pid").unlink(missing_ok=True)
        # Its log goes to the logfile; an unread pipe on stderr would fill and block PgBouncer.
        return subprocess.Popen(
            self.command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def log(self) -> str:
        log = self.workdir / "pgbouncer.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            if self.process.poll() is not None:
                self.exits.append(f"exit status {self.process.returncode}; log: {self.log()}")
                self.process = self._launch()

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join()
        self.process.terminate()
        self.process.wait(timeout=10)

"""A throwaway PostgreSQL 15 cluster from the system binaries, for benchmarks.

Default settings (fsync on, max_connections 100), listening on 127.0.0.1 on a free port,
stopped and deleted on exit whatever happens. As root, the server runs as the ``postgres``
system user (PostgreSQL refuses to run as root).
"""

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tenantsvc.testing.postgres import free_port

BIN_DIR = Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))


class Cluster:
    def __init__(self, bin_dir: Path = BIN_DIR, settings: dict[str, str] | None = None) -> None:
        self.bin_dir = bin_dir
        self.settings = settings or {}
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tenantsvc-bench-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "Cluster":
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._start()
        atexit.register(self.stop)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._stop_and_exit)
        return self

    def _start(self, postgres: Path | None = None) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        wrapped = ["-p", str(postgres), "-t", "600"] if postgres else []
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  *wrapped, "-w", "start")  # fmt: skip

    def restart(self, postgres: Path | None = None) -> None:
        """Stop the server and start it again, through ``postgres`` (an executable standing in
        for the server binary, e.g. one running it under valgrind) when given."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._start(postgres)

    def _stop_and_exit(self, *_: object) -> None:
        self.stop()
        os._exit(1)

    def stop(self) -> None:
        if self.root.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()

"""A real streaming replica of a test primary, made with ``pg_basebackup -R``."""

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgserver._commands import POSTGRES_BIN_PATH
from pgserver.postgres_server import PostgresServer


@dataclass
class ReplicaHandle:
    data: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/postgres?host={self.data}"

    def pg_ctl(self, *args: str) -> None:
        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), *args]
        done = subprocess.run(command, capture_output=True, text=True, user=self.user, timeout=60)
        if done.returncode != 0:
            log = self.data.parent / "log"
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {args}: {done.stderr} {done.stdout} {tail}")

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")


def _run(user: str | None, *command: str) -> None:
    subprocess.run([str(POSTGRES_BIN_PATH / command[0]), *command[1:]], check=True,
                   capture_output=True, user=user, timeout=120)  # fmt: skip


@contextmanager
def streaming_replica(primary: PostgresServer) -> Iterator[ReplicaHandle]:
    user = primary.system_user
    base = Path(tempfile.mkdtemp(prefix="tenantsvc-replica-"))
    if user is not None and os.geteuid() == 0:
        account = pwd.getpwnam(user)
        os.chown(base, account.pw_uid, account.pw_gid)
    socket_dir = str(primary.get_postmaster_info().socket_dir)
    data = base / "data"
    _run(user, "pg_basebackup", "-h", socket_dir, "-U", "postgres", "-D", str(data), "-R",
         "-X", "stream", "-c", "fast")  # fmt: skip
    for copied in data.glob(".s.PGSQL.*"):  # the primary's socket lock, copied with its data dir
        copied.unlink()
    replica = ReplicaHandle(data, user)
    replica.pg_ctl("-o", f"-h '' -k {data}", "-l", str(base / "log"), "-w", "start")
    try:
        yield replica
    finally:
        if (data / "postmaster.pid").exists():  # not already stopped by the test
            replica.stop()
        shutil.rmtree(base, ignore_errors=True)

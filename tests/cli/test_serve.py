"""The README's `make run` path: `tenantctl serve` on the embedded default, then its curl."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import httpx

from tenantsvc.testing.postgres import free_port


def test_serve_on_embedded_default_answers_the_printed_curl() -> None:
    data_dir = tempfile.mkdtemp(prefix="tenantsvc-serve-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTSVC_")}
    env["TENANTSVC_EMBEDDED_DATA_DIR"] = os.path.join(data_dir, "pgdata")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        output = ""
        deadline = time.monotonic() + 60
        while "Application startup complete" not in output and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line, output
            output += line
        found = re.search(
            r"curl -s (\S+) -H 'X-Tenant-ID: (\w+)' -H 'Authorization: (.+?)'", output
        )
        assert found, output
        url, tenant, auth = found.groups()
        response = httpx.get(
            url, headers={"X-Tenant-ID": tenant, "Authorization": auth}, timeout=10
        )
        assert response.status_code == 200
        assert len(response.json()["items"]) >= 3
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)

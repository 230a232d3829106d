"""Schema-driven fuzzing (schemathesis): every operation /openapi.json describes, called with
inputs generated from that description, valid and not, against a live server on the test
database, as one tenant. No input may get a 5xx, and every answer must be one the description
documents: its status, its content type, its headers, its body's schema.

Run by hand (``schemathesis run`` with every check) it found a NUL byte in a name answered
with a 500, which this test catches, and 405 answers naming only some of a path's methods
(tests/products). Derandomized, so a run is repeatable; ``EXAMPLES`` bounds its time.
"""

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Ok
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.testing.app import wait_for_http
from tenantsvc.testing.postgres import free_port

EXAMPLES = 40  # per operation and mode
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance,
          checks.response_schema_conformance]  # fmt: skip


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def target(database_url: str, engine: AsyncEngine) -> Iterator[Target]:
    """``tenantctl serve`` on the test database (whose shared track ``engine`` migrated), and
    a tenant of its own made by ``tenantctl create``."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url, "TENANTSVC_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "cli.main"]
    slug = f"fuzz_{uuid.uuid4().hex[:8]}"
    created = subprocess.run([*cli, "create", slug, "--json"], env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/healthz", server)
        yield Target(url, {"X-Tenant-ID": tenant["slug"],
                           "Authorization": f"Bearer {tenant['api_key']}"})  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_documented_and_none_is_a_5xx(target: Target, mode: GenerationMode) -> None:
    """Valid inputs (positive) and inputs that break the description (negative), each
    operation in turn."""
    schema = schemathesis.openapi.from_url(target.url + "/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results  # the description itself is sound
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == 19

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_input(operation):
            continue  # /healthz, /readyz: nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def call(case: Any) -> None:
            case.call_and_validate(base_url=target.url, headers=target.headers, checks=CHECKS)

        call()


def _has_input(operation: Any) -> bool:
    return bool(list(operation.iter_parameters()) or len(operation.body))

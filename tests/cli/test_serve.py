"""The README's `make run` path: `tenantctl serve` on the embedded default, then its curl;
and several workers: their sockets, their metrics, their stop under load."""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy.usage import daily_requests
from tenantsvc.testing.app import SCRAPE, SCRAPER_TOKEN, pool_checkouts, wait_for_http
from tenantsvc.testing.postgres import free_port
from tests.conftest import TenantFactory, TenantHandle
from tests.polling import until


def test_serve_on_embedded_default_answers_the_printed_curl() -> None:
    data_dir = tempfile.mkdtemp(prefix="tenantsvc-serve-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTSVC_")}
    env["TENANTSVC_EMBEDDED_DATA_DIR"] = os.path.join(data_dir, "pgdata")
    _crashed_while_joined(env)  # serve joins a server an earlier process left running
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
        assert "server" not in response.headers  # no "server: uvicorn" for scanners to read
    finally:
        server.send_signal(signal.SIGTERM)
        stopped = server.wait(timeout=30)
        left = _embedded_left(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    # A deploy's SIGTERM stops the embedded PostgreSQL too, and the server exits 0.
    assert (stopped, left) == (0, [])


def _crashed_while_joined(env: dict[str, str]) -> None:
    """A process that started the embedded server and was killed before its exit hook ran:
    a crash, the OOM killer, `kill -9`."""
    script = ("from tenantsvc.db.embedded import ensure_database_url; "
              "from tenantsvc.settings import get_settings; "
              "ensure_database_url(get_settings()); print('up', flush=True); input()")  # fmt: skip
    joined = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert joined.stdout is not None
    assert joined.stdout.readline() == "up\n"
    joined.kill()
    joined.wait(timeout=10)


def _embedded_left(data_dir: str) -> list[int]:
    """The processes still running on ``data_dir`` a few seconds on (killed, so a failing test
    leaves none behind)."""

    def running() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if data_dir in " ".join(p.info["cmdline"] or [])]  # fmt: skip

    deadline = time.monotonic() + 10
    while (found := running()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return [p.pid for p in found]


def test_each_worker_accepts_on_a_socket_of_its_own(
    database_url: str,
    engine: AsyncEngine,  # the engine fixture migrated the database
) -> None:
    """cli/workers.py: with several workers, each listens on its own SO_REUSEPORT socket and
    the kernel spreads new connections over them (one shared socket let one worker take most)."""
    clients: list[socket.socket] = []
    with _two_workers(database_url) as (server, port, listeners):
        try:
            assert server.pid not in listeners  # the parent holds the port but does not listen
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
            deadline = time.monotonic() + 10
            while len(accepted := _owners(port, psutil.CONN_ESTABLISHED)) < 24:
                assert time.monotonic() < deadline, accepted
                time.sleep(0.1)
            assert set(accepted) == set(listeners)  # both workers got some (all 24 on one: 1e-7)
            assert all(httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                       for _ in range(10))  # fmt: skip
        finally:
            for client in clients:
                client.close()


def test_metrics_add_up_every_workers_pool(database_url: str, tenant_a: TenantHandle) -> None:
    """Whichever worker answers the scrape reports the pools of all of them as they are now:
    the other worker's checkouts count too, though no scrape ever reaches it."""
    requests = 40
    env = {"TENANTSVC_METRICS_SAMPLE_SECONDS": "0.2", "TENANTSVC_METRICS_TOKEN": SCRAPER_TOKEN}
    with _two_workers(database_url, env) as (_, port, _listeners):
        base = f"http://127.0.0.1:{port}"
        for _ in range(requests):  # a new connection each: the kernel spreads them over both
            response = httpx.get(f"{base}/products?limit=1", headers=tenant_a.headers)
            assert response.status_code == 200
        # One connection: always the same worker.
        with httpx.Client(base_url=base, headers=SCRAPE) as scraper:
            deadline = time.monotonic() + 10
            while (
                counted := sum(pool_checkouts(scraper.get("/metrics").text).values())
            ) != requests:
                assert time.monotonic() < deadline, counted
                time.sleep(0.2)


_PRODUCTS = re.compile(r'tenantsvc_requests_total\{[^}]*route="/products"[^}]*\} (\S+)')


def test_a_dead_workers_gauges_leave_the_scrape_and_its_counts_stay(
    database_url: str, tenant_a: TenantHandle, tmp_path: Path
) -> None:
    """A worker killed (and replaced by uvicorn) no longer adds its live gauges to every
    scrape for as long as the server runs; the requests it served stay counted. And the
    metrics directory ``serve`` made goes at exit."""
    requests = 40
    env = {"TENANTSVC_METRICS_SAMPLE_SECONDS": "0.2", "TENANTSVC_METRICS_TOKEN": SCRAPER_TOKEN,
           "TMPDIR": str(tmp_path)}  # fmt: skip
    with _two_workers(database_url, env) as (_, port, listeners):
        base = f"http://127.0.0.1:{port}"
        for _ in range(requests):  # a new connection each: the kernel spreads them over both
            assert httpx.get(f"{base}/products", headers=tenant_a.headers).status_code == 200

        def scraped() -> tuple[float, float]:
            text = httpx.get(f"{base}/metrics", headers=SCRAPE).text
            served = sum(map(float, _PRODUCTS.findall(text)))
            return sum(pool_checkouts(text).values(), 0.0), served

        deadline = time.monotonic() + 10
        while scraped() != (requests, requests):
            assert time.monotonic() < deadline, scraped()
            time.sleep(0.2)
        os.kill(listeners[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (now := scraped())[0] == requests:  # its checkouts, gone from the live sum
            assert time.monotonic() < deadline, now
            time.sleep(0.2)
        assert now[1] == requests  # its requests, still counted
        assert list(tmp_path.glob("tenantsvc-metrics-*"))
    assert not list(tmp_path.glob("tenantsvc-metrics-*"))


async def test_a_stop_under_load_answers_every_order_it_took(
    database_url: str, tenant_a: TenantHandle, engine: AsyncEngine
) -> None:
    """A deploy's SIGTERM while orders stream in: each worker stops taking connections and
    finishes the requests it holds. Every order that took stock got its 201, none a 5xx; a
    client sees at worst a refused connection, or one closed before its request was read."""
    with _two_workers(database_url) as (server, port, _listeners):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers=tenant_a.headers, timeout=30) as c:
            product = await c.post(
                "/products", json={"name": "p", "price_cents": 1, "stock": 10**6}
            )
            user = await c.post("/users", json={"email": "drain@x.io", "name": "D"})
            order = {"user_id": user.json()["id"],
                     "items": [{"product_id": product.json()["id"], "quantity": 1}]}  # fmt: skip
            answers: list[int | str] = []

            async def client() -> None:
                while True:
                    try:
                        answers.append((await c.post("/orders", json=order)).status_code)
                    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as e:
                        answers.append(type(e).__name__)
                        return

            async def answered() -> bool:
                return len(answers) >= 200

            clients = [asyncio.create_task(client()) for _ in range(16)]
            await until(answered, "no orders were answered")
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*clients), 60)
        assert server.wait(timeout=30) == 0  # stopped gracefully, not killed
    assert {a for a in answers if isinstance(a, int)} == {201}, answers
    async with engine.connect() as conn:
        sold = await conn.scalar(text(f"SELECT sum(quantity) FROM {tenant_a.schema}.order_items"))
    assert sold == answers.count(201)


async def test_a_stop_waits_for_a_slow_client_only_so_long(
    database_url: str, engine: AsyncEngine, tenant_factory: TenantFactory
) -> None:
    """uvicorn's graceful shutdown waits for every request without a bound: a client sending
    its body slowly held a SIGTERM'd server until the deploy's SIGKILL, which takes the last
    usage flush with it. Past TENANTSVC_SHUTDOWN_TIMEOUT_SECONDS the request is cancelled (its
    transaction rolled back), answered a 503 problem to retry, the workers' last flush counts
    what they served, and the server exits 0."""
    tenant = await tenant_factory()
    answer = await asyncio.to_thread(_stopped_under_a_slow_client, database_url, tenant)
    head, problem = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 "), answer
    assert b"retry-after: 1" in head
    assert json.loads(problem)["detail"] == "the server is shutting down"
    async with engine.connect() as conn:
        served = await daily_requests(conn, tenant.slug)
    assert [(day.reads, day.writes) for day in served] == [(3, 1)]  # the cancelled POST too


def _stopped_under_a_slow_client(database_url: str, tenant: TenantHandle) -> bytes:
    """Three reads, then a POST whose body never comes, then SIGTERM: what the POST got."""
    env = {"TENANTSVC_SHUTDOWN_TIMEOUT_SECONDS": "1", "TENANTSVC_USAGE_FLUSH_SECONDS": "3600"}
    with (
        _two_workers(database_url, env) as (server, port, _l),
        socket.create_connection(("127.0.0.1", port), timeout=30) as slow,
    ):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=tenant.headers) as client:
            assert [client.get("/products").status_code for _ in range(3)] == [200] * 3
        fields = {**tenant.headers, "Content-Type": "application/json", "Content-Length": "100"}
        slow.sendall(f"{_post_head('/products', fields)}\r\n{{".encode())  # the body never comes
        time.sleep(0.5)  # the request is in the app, reading its body
        stopped = time.monotonic()
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        assert time.monotonic() - stopped < 10
        return _read_all(slow)


def test_serves_an_app_authors_own_app_from_where_it_is_run(
    database_url: str, tenant_a: TenantHandle, tmp_path: Path
) -> None:
    """`serve --app yours:app` (README, "Routes of your own"): the module is found in the
    directory serve runs from, as uvicorn's own command finds it; the console script alone did
    not look there ("Could not import module")."""
    (tmp_path / "yours.py").write_text(textwrap.dedent("""
        from fastapi import APIRouter
        from tenantsvc.deps import CurrentTenant
        from tenantsvc.main import create_app
        from tenantsvc.tenant_routes import TenantRoute

        router = APIRouter(route_class=TenantRoute)

        @router.get("/whoami")
        async def whoami(tenant: CurrentTenant) -> dict[str, str]:
            return {"slug": tenant.slug}

        app = create_app(routers=[router])
    """))  # fmt: skip
    with _two_workers(database_url, None, "--app", "yours:app", cwd=tmp_path) as (_, port, _l):
        answer = httpx.get(f"http://127.0.0.1:{port}/whoami", headers=tenant_a.headers)
    assert answer.json() == {"slug": tenant_a.slug}


def test_a_request_head_past_the_bound_is_431_and_a_big_body_is_not(
    database_url: str, tenant_a: TenantHandle
) -> None:
    """httptools buffers a head of any size (a 50 MB header was parsed and served): past
    64 KiB the served port answers a 431 problem and closes. A head just under the bound is
    served, and so is a body that arrives in the same packets as its head."""
    with _two_workers(database_url) as (_, port, _listeners):
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * (4 << 20) + b"\r\n\r\n"
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
        for head in (huge, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"):
            status, answer = _raw_exchange(port, head)
            assert (status, _problem_status(answer)) == (431, 431), answer[:200]
        near = {**tenant_a.headers, "X-Junk": "a" * 40_000}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=near) as kept_alive:
            # Each head is counted alone: five on one connection are 200 KB, and all served.
            assert [kept_alive.get("/products").status_code for _ in range(5)] == [200] * 5
        items = [{"name": "n" * 200, "price_cents": 1, "stock": 1} for _ in range(5_000)]
        body = json.dumps({"items": items}).encode()  # about 1.2 MB
        fields = {**tenant_a.headers, "Connection": "close", "Content-Type": "application/json",
                  "Content-Length": str(len(body))}  # fmt: skip
        post = f"{_post_head('/products/bulk', fields)}\r\n".encode()
        status, answer = _raw_exchange(port, post + body)
        assert status == 201, answer[:300]


def test_a_request_the_parser_refuses_is_a_400_problem_that_says_why(
    database_url: str, tenant_a: TenantHandle
) -> None:
    """Framing that could smuggle a second request past a proxy (Content-Length with
    Transfer-Encoding, two lengths), or a malformed header: uvicorn answered "Invalid HTTP
    request received." in plain text. Now a problem body with what the parser found; and
    nothing of the would-be product is written."""
    body = b'{"name": "smuggled", "price_cents": 1, "stock": 1}'
    post = _post_head("/products", {**tenant_a.headers, "Content-Type": "application/json"})
    cases = {
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n33\r\n" + body + b"\r\n0\r\n\r\n":
            "Transfer-Encoding can't be present with Content-Length",
        b"Content-Length: 51\r\nContent-Length: 5\r\n\r\n" + body: "Duplicate Content-Length",
        b"Bad Header: 1\r\nContent-Length: 51\r\n\r\n" + body: "Invalid header token",
    }  # fmt: skip
    with _two_workers(database_url) as (_, port, _listeners):
        for framing, reason in cases.items():
            status, answer = _raw_exchange(port, post.encode() + framing)
            head, problem = answer.split(b"\r\n\r\n", 1)
            assert status == 400, answer
            assert b"content-type: application/problem+json" in head
            assert json.loads(problem)["detail"] == f"not a valid HTTP/1.1 request: {reason}"
        products = httpx.get(f"http://127.0.0.1:{port}/products", headers=tenant_a.headers)
        assert products.json()["items"] == []
        # An upgrade is no parser error: no routes take a WebSocket, so its handshake is refused.
        upgrade = (b"GET /products HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
        assert _raw_exchange(port, upgrade)[0] == 403


def test_a_head_that_does_not_arrive_in_time_is_408_and_closed(
    database_url: str, tenant_a: TenantHandle
) -> None:
    """uvicorn holds a connection that sends nothing, or trickles its head (slowloris), for as
    long as the client likes. Past TENANTSVC_HEAD_TIMEOUT_SECONDS both are closed (the one
    part way through a head with a 408 problem), while a kept-alive client that pauses
    between its requests stays served."""
    with _two_workers(database_url, {"TENANTSVC_HEAD_TIMEOUT_SECONDS": "1"}) as (_, port, _l):
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        trickling = socket.create_connection(("127.0.0.1", port), timeout=10)
        started = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=tenant_a.headers) as kept:
            assert kept.get("/products").status_code == 200
            trickling.sendall(b"GET /healthz HTTP/1.1\r\n")
            for _ in range(8):  # a header line every 0.25 s, never the blank line
                time.sleep(0.25)
                with contextlib.suppress(OSError):
                    trickling.sendall(b"X-Slow: 1\r\n")
            assert kept.get("/products").status_code == 200  # 2 s later, the same connection
        with silent, trickling:
            answers = [_read_all(silent), _read_all(trickling)]
        # Closed without a word where nothing was sent: a request sent at that moment
        # would read a 408 as its own answer.
        assert answers[0] == b""
        assert answers[1].startswith(b"HTTP/1.1 408 "), answers[1]
        assert _problem_status(answers[1]) == 408
        assert time.monotonic() - started < 5  # closed by the sweep, not by the test's timeout


def test_a_body_that_does_not_arrive_in_time_is_408_and_closed(
    database_url: str, tenant_a: TenantHandle
) -> None:
    """A body trickled a byte at a time was waited for as long as the client liked. Past
    TENANTSVC_BODY_TIMEOUT_SECONDS it gets a 408 problem and the connection is closed, and
    nothing of it is written; a body sent in pieces in time is served."""
    body = b'{"name": "slow", "price_cents": 1, "stock": 1}'
    fields = {**tenant_a.headers, "Content-Type": "application/json",
              "Content-Length": str(len(body))}  # fmt: skip
    post = f"{_post_head('/products', fields)}\r\n".encode()
    env = {"TENANTSVC_BODY_TIMEOUT_SECONDS": "1", "TENANTSVC_METRICS_TOKEN": SCRAPER_TOKEN}
    with _two_workers(database_url, env) as (_, port, _l):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as paced:
            paced.sendall(post + body[:10])
            time.sleep(0.3)
            paced.sendall(body[10:])  # the rest, well in time
            served = paced.recv(65536)
        assert served.startswith(b"HTTP/1.1 201 "), served
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as trickling:
            trickling.sendall(post + body[:5])
            for byte in body[5:12]:  # a byte every 0.25 s: never all of it
                time.sleep(0.25)
                with contextlib.suppress(OSError):
                    trickling.sendall(bytes([byte]))
            answer = _read_all(trickling)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"] == (
            "the request body took too long"
        )
        assert time.monotonic() - started < 5  # closed by the sweep, not by the test's timeout
        products = httpx.get(f"http://127.0.0.1:{port}/products", headers=tenant_a.headers)
        assert [p["name"] for p in products.json()["items"]] == ["slow"]  # the paced one only
        # Counted (and logged) as the 408 the client got, not as what the app made of the
        # cut-off body (a 422).
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=SCRAPE).text
        posts = {line.split('status="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
                 for line in scraped.splitlines()
                 if line.startswith("tenantsvc_requests_total{")
                 and 'route="/products"' in line and 'method="POST"' in line}  # fmt: skip
        assert posts == {"201": "1.0", "408": "1.0"}, posts


def test_an_idle_kept_alive_connection_lasts_the_setting(
    database_url: str,
    engine: AsyncEngine,  # the engine fixture migrated the database
) -> None:
    """Behind a load balancer the service must keep idle connections open longer than the
    balancer does (AWS ALB: 60 s), or the balancer sends requests on connections being closed.
    uvicorn's 5 s was fixed; TENANTSVC_KEEP_ALIVE_SECONDS sets it (1 s here: closed after 2)."""
    serving = _two_workers(database_url, {"TENANTSVC_KEEP_ALIVE_SECONDS": "1"})
    with (
        serving as (_, port, _l),
        socket.create_connection(("127.0.0.1", port), timeout=10) as kept,
    ):
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):  # the head and body may come apart
            chunk = kept.recv(65536)
            assert chunk, answer  # not closed before the whole answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        time.sleep(2)
        with contextlib.suppress(ConnectionResetError):
            assert kept.recv(65536) == b""  # the server closed it


def _post_head(path: str, headers: dict[str, str]) -> str:
    """A POST's request line and header lines, for a raw socket: the blank line that ends
    the head (and what follows) is the caller's."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{lines}"


def _raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """``request`` in one write, as a client that does not wait; the status and all read."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            conn.sendall(request)  # the server may close before it has read it all
        answer = _read_all(conn)
    return int(answer.split(b" ", 2)[1]), answer


def _read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset is a close)."""
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def _problem_status(answer: bytes) -> int:
    """The ``status`` of the problem body after a raw response's head."""
    status: int = json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"]
    return status


def test_a_second_server_on_the_port_is_refused(database_url: str, engine: AsyncEngine) -> None:
    """SO_REUSEPORT would let a second ``serve`` (an old version left running, a second
    deploy) listen on the workers' port too and silently take a share of the connections: it
    exits at once with one line instead, with several workers or one."""
    with _two_workers(database_url) as (_server, port, listeners):
        env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url}
        serve = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers"]
        for workers in ("2", "1"):
            second = subprocess.Popen(
                [*serve, workers], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, start_new_session=True,
            )  # fmt: skip
            try:
                _, said = second.communicate(timeout=60)
            finally:  # a second server that did start is stopped, its workers too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(second.pid, signal.SIGKILL)
            assert second.returncode == 1, said
            assert said == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
            assert sorted(_owners(port, psutil.CONN_LISTEN)) == sorted(listeners)


def _serve_exits(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``tenantctl serve`` on a free port, expected to stop by itself."""
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(free_port()), *args]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=90)  # fmt: skip


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreachable_database_is_one_line_and_a_failure(workers: str) -> None:
    """Not a traceback from each worker's startup; and with several workers, not exit 0."""
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres"
    done = _serve_exits({"TENANTSVC_DATABASE_URL": nowhere}, "--workers", workers)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"error: cannot reach the database at {nowhere} "), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_workers_that_cannot_start_fail_the_server(database_url: str) -> None:
    """uvicorn's supervisor stops when its workers fail to start, and returned as after a clean
    stop: a service manager would have taken exit 0 for a deliberate stop."""
    env = {"TENANTSVC_DATABASE_URL": database_url}
    done = _serve_exits(env, "--workers", "2", "--app", "tenantsvc.nowhere:app")
    assert done.returncode == 3, done.stdout[-2000:]


async def test_a_pool_the_server_cannot_hold_is_a_warning_at_start(
    database_url: str, engine: AsyncEngine
) -> None:
    """Workers x (pool + overflow) past what the server allows first showed under load, as
    "too many clients" and 503s; only `doctor` said so before. `serve` says it as it starts,
    counting the workers it was given; a pool that fits says nothing."""
    async with engine.connect() as conn:
        usable = await conn.scalar(text(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
        ))  # fmt: skip
    per_worker = (usable - 5) // 2  # fits one worker and its tools, not three
    env = {"TENANTSVC_DATABASE_URL": database_url, "TENANTSVC_WORKERS": "1",
           "TENANTSVC_POOL_SIZE": str(per_worker - 10), "TENANTSVC_MAX_OVERFLOW": "10"}  # fmt: skip
    no_app = ("--app", "tenantsvc.nowhere:app")  # the check runs, then the workers fail
    for args, warned in (((), False), (("--workers", "3"), True)):
        done = _serve_exits(env, *args, *no_app)
        warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
        assert bool(warnings) == warned, done.stderr[-2000:]
    assert warnings[0].startswith(f"warning: pool: 3 workers x ({per_worker - 10} pool + 10 ")
    assert "set TENANTSVC_POOL_SIZE=" in warnings[0]


# The console script, as installed: ``python -m`` would put the working directory on the
# import path by itself.
_TENANTCTL = str(Path(sys.executable).with_name("tenantctl"))


@contextlib.contextmanager
def _two_workers(
    database_url: str, env: dict[str, str] | None = None, *args: str, cwd: Path | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int, list[int]]]:
    """``tenantctl serve --workers 2`` (and ``args``) on the test database, once both workers
    listen: the server, its port and the listening workers' pids."""
    env = {**os.environ, "TENANTSVC_DATABASE_URL": database_url, "TENANTSVC_POOL_SIZE": "2",
           "TENANTSVC_MAX_OVERFLOW": "0", **(env or {})}  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve makes its own, as in production
    port = free_port()
    server = subprocess.Popen(
        [_TENANTCTL, "serve", "--port", str(port), "--workers", "2", *args], cwd=cwd,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", server)
        deadline = time.monotonic() + 30
        while len(listeners := _owners(port, psutil.CONN_LISTEN)) < 2:
            assert time.monotonic() < deadline, listeners
            time.sleep(0.2)
        yield server, port, listeners
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have stopped it already
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _owners(port: int, status: str) -> list[int]:
    """The pid holding each server-side socket of ``port`` in ``status``."""
    return [c.pid for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == port and c.status == status and c.pid]  # fmt: skip

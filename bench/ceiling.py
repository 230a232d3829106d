"""The database's own ceiling for each workload, on the same cluster: the SQL the service
sends, through pgbench -M prepared (W3, W4) and psql (W1, W2)."""

import re
import subprocess
import tempfile
import time
from pathlib import Path

W3 = """\\set t random(0, {last})
\\set a random(0, {products} - 20)
BEGIN;
SELECT set_config('search_path', 'tenant_t' || lpad(CAST(:t AS text), 5, '0'), true);
SELECT id, name, price_cents, stock, deleted_at, created_at FROM products
 WHERE deleted_at IS NULL AND id > :a ORDER BY id LIMIT 21;
COMMIT;
"""

W4 = """\\set t random(0, {last})
\\set u random(1, {users})
\\set g random(0, {products} / 10 - 1)
\\set o random(1, 9)
\\set p 10 * :g + :o
BEGIN;
SELECT set_config('search_path', 'tenant_t' || lpad(CAST(:t AS text), 5, '0'), true);
SELECT id FROM users WHERE id = :u;
UPDATE products SET stock = stock - 1 WHERE id = :p AND deleted_at IS NULL AND stock >= 1
 RETURNING price_cents \\gset
INSERT INTO orders (user_id) VALUES (:u) RETURNING id, created_at \\gset
INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
 VALUES (:id, :p, 1, :price_cents);
COMMIT;
"""


def pgbench(libpq_url: str, script: str, connections: int, seconds: int) -> float:
    path = Path(tempfile.mkstemp(prefix="tenantsvc-pgbench-", suffix=".sql")[1])
    path.write_text(script)
    done = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(connections), "-j", "2",
         "-T", str(seconds), "-f", str(path), libpq_url],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    )  # fmt: skip
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


def psql_seconds(libpq_url: str, sql: str) -> float:
    started = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq_url], input=sql,
                   text=True, capture_output=True, check=True)  # fmt: skip
    return time.perf_counter() - started


def provision_sql(schemas: list[str], head_script: str) -> str:
    return "\n".join(
        f"BEGIN; CREATE SCHEMA {s}; SELECT set_config('search_path', '{s}', true);\n"
        f"{head_script}\nCOMMIT;"
        for s in schemas
    )


def migration_sql(schemas: list[str], script: str) -> str:
    return "\n".join(
        f"BEGIN; SELECT set_config('search_path', '{s}', true);\n{script}\nCOMMIT;" for s in schemas
    )

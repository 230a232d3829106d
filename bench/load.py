"""HTTP load with wrk (one thread, CONNS connections), tenants taken round-robin per request.

Modes: ``read`` (W3), ``write`` (W4), and W4 with an Idempotency-Key, new for every order
(``keyed``) or one of 100 per tenant (``replay``, bench/idempotency.py). Keys carry a tag new
to each script, so a script written later never replays an earlier one's orders."""

import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LUA = r"""
local tenants = { %(tenants)s }
local n = #tenants
local i, sent = 0, 0
local products, users, deleted_every = %(products)d, %(users)d, 10
local mode = "%(mode)s"
math.randomseed(%(seed)d)

local function live_product()
  local p = math.random(1, products)
  while p %% deleted_every == 0 do p = math.random(1, products) end
  return p
end

request = function()
  i = i %% n + 1
  local t = tenants[i]
  local headers = { ["X-Tenant-ID"] = t[1], ["Authorization"] = "Bearer " .. t[2],
                    ["Content-Type"] = "application/json" }
  if mode == "read" then
    local after = math.random(0, products - 20)
    return wrk.format("GET", "/products?limit=20&after_id=" .. after, headers)
  end
  local user, product = math.random(1, users), live_product()
  if mode == "keyed" then  -- every order its own Idempotency-Key: all are placed
    sent = sent + 1
    headers["Idempotency-Key"] = "%(tag)s-" .. sent
  elseif mode == "replay" then  -- 100 keys, each with one body: all but the first replay
    local k = math.random(1, 100)
    user, product = k %% users + 1, k * 7 %% products + 1
    if product %% deleted_every == 0 then product = product - 1 end
    headers["Idempotency-Key"] = "%(tag)s-" .. k
  end
  local body = string.format('{"user_id": %%d, "items": [{"product_id": %%d, "quantity": 1}]}',
                             user, product)
  return wrk.format("POST", "/orders", headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT_LINE %%d %%d %%d %%d %%d %%.3f %%.3f %%.3f\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, summary.duration,
    requests.mean, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""


@dataclass
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    requests: int
    # What each request cost the service's processes and the server's backends, by measure
    # (CPU and kernel CPU in microseconds, context switches; bench/run.py's measured)
    per_request: dict[str, float] = field(default_factory=dict)
    checkouts: dict[str, float] | None = None  # tenant checkouts by what they found (bench/run.py)
    max_ms: float = 0.0  # the slowest request


def script(mode: str, tenants: list[tuple[str, str]], products: int, users: int, seed: int) -> Path:
    entries = ", ".join(f'{{"{slug}", "{key}"}}' for slug, key in tenants)
    text = LUA % {"tenants": entries, "products": products, "users": users, "mode": mode,
                  "seed": seed, "tag": uuid.uuid4().hex[:12]}  # fmt: skip
    path = Path(tempfile.mkstemp(prefix=f"tenantsvc-wrk-{mode}-", suffix=".lua")[1])
    path.write_text(text)
    return path


def run(url: str, lua: Path, connections: int, seconds: int) -> WrkRun:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )  # fmt: skip
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT_LINE"))
    requests, non2xx, socket_errors, duration_us, _, p50, p99, slowest = line.split()[1:]
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    rps = float(found.group(1)) if found else int(requests) / (int(duration_us) / 1e6)
    return WrkRun(rps, float(p50), float(p99), int(non2xx), int(socket_errors), int(requests),
                  max_ms=float(slowest))  # fmt: skip

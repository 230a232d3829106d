"""CORS for browser clients (TENANTSVC_CORS_ORIGINS): a preflight is answered without a
tenant, every answer (a refusal too) carries the headers a page needs to read it, and other
origins, or a service without the setting, get none."""

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.settings import Settings
from tenantsvc.testing.app import running_app
from tests.conftest import TenantHandle, make_settings

APP = "https://app.example.com"


@pytest.fixture
async def cors_client(
    database_url: str,
    engine: AsyncEngine,  # the engine fixture migrated the database
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(
        make_settings(database_url, cors_origins=f"{APP}, http://localhost:5173")
    ) as running:
        yield running.client


def _preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-tenant-id, "
                                              "idempotency-key"}  # fmt: skip


async def test_a_preflight_needs_no_tenant_and_names_what_a_page_may_send(
    cors_client: httpx.AsyncClient,
) -> None:
    answer = await cors_client.options("/orders", headers=_preflight(APP))
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-tenant-id", "idempotency-key"} <= allowed
    assert "POST" in answer.headers["access-control-allow-methods"]
    other = await cors_client.options("/orders", headers=_preflight("https://evil.example"))
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


async def test_answers_and_refusals_carry_the_headers_a_page_reads(
    cors_client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    created = await cors_client.post("/products", json={"name": "c", "price_cents": 1, "stock": 1},
                                     headers={**tenant_a.headers, "Origin": APP})  # fmt: skip
    read = await cors_client.get(f"/products/{created.json()['id']}",
                                 headers={**tenant_a.headers, "Origin": APP})  # fmt: skip
    assert read.headers["access-control-allow-origin"] == APP
    exposed = {h.strip().lower() for h in read.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "x-request-id", "retry-after", "x-consistency-token"} <= exposed
    refused = await cors_client.get(
        "/products", headers={"X-Tenant-ID": tenant_a.slug, "Origin": APP}
    )
    assert (refused.status_code, refused.headers["access-control-allow-origin"]) == (401, APP)
    elsewhere = await cors_client.get(
        "/products", headers={**tenant_a.headers, "Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 200  # the browser, not the server, keeps it from the page
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_without_the_setting_no_origin_is_allowed(
    client: httpx.AsyncClient, tenant_a: TenantHandle
) -> None:
    preflight = await client.options("/orders", headers=_preflight(APP))
    assert "access-control-allow-origin" not in preflight.headers
    read = await client.get("/products", headers={**tenant_a.headers, "Origin": APP})
    assert "access-control-allow-origin" not in read.headers


@pytest.mark.parametrize("origins", ["https://app.example.com/", "app.example.com", "ftp://x.io"])
def test_an_origin_is_a_scheme_and_a_host(origins: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings.model_validate({"cors_origins": origins})

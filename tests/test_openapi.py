"""The hot endpoints run on plain routes (plain_routes.py), yet the API description is still
FastAPI's own, generated from their signatures."""

import httpx


async def test_plain_routes_stay_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    listing = spec["paths"]["/products"]["get"]
    query = [p for p in listing["parameters"] if p["in"] == "query"]
    assert [p["name"] for p in query] == ["after_id", "limit"]
    assert query[1]["schema"]["maximum"] == 100
    ok = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Page_ProductOut_"}
    ordering = spec["paths"]["/orders"]["post"]
    body = ordering["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/OrderIn"}
    assert "201" in ordering["responses"]
    assert "422" in ordering["responses"]
    for path in ("/orders", "/users", "/products", "/products/bulk"):
        creating = spec["paths"][path]["post"]["parameters"]
        key = next(p for p in creating if p["name"] == "Idempotency-Key")
        assert (key["in"], key["required"]) == ("header", False)
        assert "kept 24 hours" in key["description"]


async def test_every_error_is_documented_as_a_problem_body(client: httpx.AsyncClient) -> None:
    """Clients generated from /openapi.json see what the service really answers: each tenant
    route's refusals, and 422 as the problem body it is, not FastAPI's default shape."""
    spec = (await client.get("/openapi.json")).json()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}
    tenant_routes = [(path, op) for path, ops in spec["paths"].items() for op in ops.values()
                     if path.split("/")[1] in {"products", "orders", "users"}]  # fmt: skip
    assert len(tenant_routes) == 17
    for path, operation in tenant_routes:
        for status in ("400", "401", "403", "404", "422", "429", "503"):
            assert operation["responses"][status]["content"] == problem, (path, status)
    ordering = spec["paths"]["/orders"]["post"]["responses"]
    assert ordering["409"]["content"] == ordering["413"]["content"] == problem
    body = spec["components"]["schemas"]["ProblemBody"]
    assert set(body["required"]) == {"title", "status"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_tenant_routes_document_the_tenant_header_and_key(client: httpx.AsyncClient) -> None:
    """What the middleware reads is in the description too: generated clients send it, and
    /docs offers "Authorize" for the key."""
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["tenantKey"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation
                assert not headers
                continue
            assert operation["security"] == [{"tenantKey": []}], (method, path)
            assert headers["X-Tenant-ID"]["required"] is True, (method, path)
            assert ("X-Consistency-Token" in headers) == (method == "get"), (method, path)

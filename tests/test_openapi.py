"""The hot endpoints run on plain routes (plain_routes.py), yet the API description is still
FastAPI's own, generated from their signatures."""

import httpx


async def test_plain_routes_stay_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    listing = spec["paths"]["/products"]["get"]
    assert [p["name"] for p in listing["parameters"]] == ["after_id", "limit"]
    assert listing["parameters"][1]["schema"]["maximum"] == 100
    ok = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Page_ProductOut_"}
    ordering = spec["paths"]["/orders"]["post"]
    body = ordering["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/OrderIn"}
    assert "201" in ordering["responses"]
    assert "422" in ordering["responses"]

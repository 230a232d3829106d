import pytest

from tenantsvc.tenancy.slugs import InvalidSlugError, is_valid_slug, schema_for


@pytest.mark.parametrize("slug", ["ab", "acme", "a_1", "x" * 40, "tenantx", "pgx"])
def test_valid_slugs_map_to_prefixed_schema(slug: str) -> None:
    assert is_valid_slug(slug)
    assert schema_for(slug) == f"tenant_{slug}"


@pytest.mark.parametrize(
    "slug",
    ["", "a", "x" * 41, "Acme", "1abc", "_abc", "a-b", "a b", "a;b", "a,b", "acme\n",
     "\u0430\u0441", "public", "pg_catalog", "information_schema", "tenantsvc", "$user",
     "a\x00b", "tenant_x", "pg_x", "archived_1_x"],
)  # fmt: skip
def test_invalid_or_reserved_slugs_are_refused(slug: str) -> None:
    assert not is_valid_slug(slug)
    with pytest.raises(InvalidSlugError):
        schema_for(slug)

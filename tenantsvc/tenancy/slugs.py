"""Slug rules, display-name rules and the one mapping from a slug to its schema name.

A schema name is only ever derived here, from a slug that passed these rules, and is stored in
the registry; request handling reads it back from the registry and never builds it from input.
No schema name is given to two tenants, even one after the other (``provisioning.py``).
"""

import re

from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.wording import not_text

SHARED_SCHEMA = "tenantsvc"
SCHEMA_PREFIX = "tenant_"
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9_]{1,39}")
RESERVED_SLUGS = frozenset(
    {
        "admin", "api", "app", "default", "information_schema", "pg_catalog", "pg_toast",
        "postgres", "public", "root", "shared", "system", "template0", "template1",
        "tenant", "tenants", "tenantsvc", "www",
    }
)  # fmt: skip


# A slug that looks like a schema name ("tenant_acme" would live in "tenant_tenant_acme") or
# a system schema invites confusion in logs and support tickets: refused.
RESERVED_PREFIXES = ("tenant_", "pg_", "archived_")


class InvalidSlugError(ValueError):
    pass


def _reserved(slug: str) -> bool:
    return slug in RESERVED_SLUGS or slug.startswith(RESERVED_PREFIXES)


def is_valid_slug(slug: str) -> bool:
    return SLUG_PATTERN.fullmatch(slug) is not None and not _reserved(slug)


def validate_slug(slug: str) -> str:
    if SLUG_PATTERN.fullmatch(slug) is None:
        raise InvalidSlugError(
            f"invalid tenant slug {slug!r}: use 2-40 characters a-z, 0-9 and _, starting "
            "with a letter"
        )
    if _reserved(slug):
        raise InvalidSlugError(f"tenant slug {slug!r} is reserved")
    return slug


def display_name(name: str) -> str:
    """The name as the registry keeps it: without the whitespace around it (a blank name names
    nothing), 1 to 200 characters, on one line and nothing a terminal would take as a command
    (``wording.not_text``: it is printed in every ``tenantctl list``, and an import takes it
    from the file it is given)."""
    kept = name.strip()
    if not 1 <= len(kept) <= 200:
        raise TenancyError("a display name has 1 to 200 characters besides spaces")
    if unprintable := next(filter(not_text, kept), None):
        raise TenancyError(
            f"a display name is text on one line: {unprintable!r} (a control character, a line "
            "break or a bidirectional override) is refused"
        )
    return kept


def schema_for(slug: str, incarnation: int = 1) -> str:
    """``tenant_<slug>``; for the slug's next tenants once earlier ones were purged,
    ``tenant_<n>_<slug>``, which no slug's first schema can be (a slug starts with a letter)."""
    if incarnation == 1:
        return SCHEMA_PREFIX + validate_slug(slug)
    return f"{SCHEMA_PREFIX}{incarnation}_{validate_slug(slug)}"

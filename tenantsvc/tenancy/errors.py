"""Errors of tenant administration; the CLI prints them as one line and exits non-zero."""

from tenantsvc.wording import plural


def first_line(exc: BaseException) -> str:
    """The database's own message, first line only (one-line CLI errors, per-tenant outcomes)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class TenancyError(Exception):
    """Base class: the message is meant for the operator as it is."""


class TenantNotFoundError(TenancyError):
    def __init__(self, *slugs: str) -> None:
        listed = ", ".join(repr(s) for s in slugs)
        super().__init__(f"unknown {plural(len(slugs), 'tenant')} {listed}")


class UnknownRevisionError(TenancyError):
    def __init__(self, track: str, target: str) -> None:
        super().__init__(f"no {track} revision {target!r}: use head, base or a revision id")


class TenantExistsError(TenancyError):
    def __init__(self, slug: str, status: str | None = None) -> None:
        message = f"tenant {slug!r} already exists"
        if status == "archived":  # the slug stays taken, so that a restore finds it free
            message += (
                f", archived: `tenantctl restore {slug}` brings it back,"
                f" `tenantctl drop {slug} --purge` deletes it and frees the slug"
            )
        super().__init__(message)


class KeyNotFoundError(TenancyError):
    def __init__(self, slug: str, key_id: int) -> None:
        super().__init__(f"tenant {slug!r} has no API key {key_id}")


class MigrationError(TenancyError):
    pass

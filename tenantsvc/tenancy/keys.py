"""API keys: random, shown once, stored only as a SHA-256 digest.

The keys are 256-bit random strings, so a fast digest is enough (there is nothing to brute
force); a slow password hash would only add latency to every request.
"""

import hashlib
import re
import secrets

KEY_PREFIX = "tsk_"
# RFC 9110 11.4: the scheme in any case, one or more spaces, then the credential.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S.*)")


def bearer(authorization: str) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` value; None for another scheme, or
    none. A tenant's key and the metrics scraper's token are both read with it."""
    found = _BEARER.fullmatch(authorization)
    return None if found is None else found.group(1)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:12]


def new_key_row() -> tuple[str, dict[str, str]]:
    """A new key, and what the registry stores of it (its digest and display prefix)."""
    key = new_key()
    return key, {"key_hash": hash_key(key), "prefix": display_prefix(key)}

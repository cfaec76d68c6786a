"""Personal access tokens: ``roost_pat_<random>_<checksum>``.

The fixed prefix and the CRC32 checksum let secret scanners spot a leaked token without
asking the server (GitHub's token format does the same). The random part holds 190 bits.
The database keeps only the token's SHA-256 and a short display prefix, so a token cannot
be recovered from it: a fast hash is enough because the token is random, not a password.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

PREFIX = "roost_pat_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_CHARS = 32  # 62^32 ~ 2^190
_CHECK_CHARS = 6  # 62^6 > 2^32


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECK_CHARS)


def mint_token() -> str:
    """A new personal access token (shown once, then only its hash is kept)."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
    return f"{PREFIX}{random_part}_{_checksum(random_part)}"


def is_well_formed(token: str) -> bool:
    """Whether ``token`` has a PAT's shape and a correct checksum (no lookup: a typo or a
    truncated paste is told apart from a revoked token, and costs no database read)."""
    if not token.startswith(PREFIX):
        return False
    random_part, sep, check = token[len(PREFIX) :].partition("_")
    return (
        sep == "_"
        and len(random_part) == _RANDOM_CHARS
        and all(c in _ALPHABET for c in random_part)
        and secrets.compare_digest(check, _checksum(random_part))
    )


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """The part of a token shown in lists, enough to tell tokens apart."""
    return token[: len(PREFIX) + 6]


__all__ = ["PREFIX", "display_prefix", "is_well_formed", "mint_token", "token_hash"]

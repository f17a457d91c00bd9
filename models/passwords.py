"""Password hashes: Argon2id for every password set from now on, the older Werkzeug hashes still accepted.

Argon2id with OWASP's first recommended setting (Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1) costs
about 20 ms of one core here, where Werkzeug's default scrypt (N = 2^15, r = 8, p = 1) costs about 100 ms for a
comparable resistance to guessing on GPUs. At publication every student of a district signs in within the same
hours, and the hash is most of a login's cost: the cheaper of two equally recommended settings decides how many
students a two-core server lets in at once (bench/load.py, README "Performance").

Hashes made before (Werkzeug ``scrypt:…`` and ``pbkdf2:…``, including the printed initial passwords of
forms/register.py) keep working; ``needs_rehash`` tells the login to store an Argon2id hash of the password it
has just verified, so an install moves over as people sign in.
"""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from werkzeug.security import check_password_hash

ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
_hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                         parallelism=ARGON2_PARALLELISM)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; an unusable or malformed hash matches nothing."""
    if not stored or password is None:
        return False
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if stored.startswith(("scrypt:", "pbkdf2:")):
        try:
            return check_password_hash(stored, password)
        except ValueError:  # a damaged hash (wrong field count, bad parameters)
            return False
    return False


def needs_rehash(stored: str | None) -> bool:
    """A usable hash of another kind or of weaker parameters: worth replacing after a successful check."""
    if not stored:
        return False
    if stored.startswith("$argon2"):
        try:
            return _hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False
    return stored.startswith(("scrypt:", "pbkdf2:"))


# Checked against when the username does not exist, so both answers take the same time.
DUMMY_HASH = hash_password("not-a-password-of-anyone")

"""Who may do what through the API: bearer tokens (stored hashed) and optional basic auth.

Roles are ordered: read < silence < admin. `silence` creates and expires silences and
maintenance windows; `admin` also reloads rules and sends test notifications.

tokens_file: one token per line, `NAME ROLE sha256:HEX` (`alertd token add` writes them). Tokens
are 32 random bytes, so a plain SHA-256 is enough to store them: there is nothing to brute-force,
unlike a password. basic_auth_file: `USER ROLE pbkdf2_sha256$ITERATIONS$SALT$HASH` per line, for
tools that only speak basic auth (Grafana's data source); passwords are people's, so they get a
slow salted hash.

With neither file configured the API is read-only for everyone: reads are open (it listens on
loopback by default) and writes are refused with a message that says how to create a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

PBKDF2_ITERATIONS = 200_000


class Role(IntEnum):
    READ = 1
    SILENCE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; expected read, silence or admin") from None


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role | None  # None: anonymous

    def can(self, role: Role) -> bool:
        return self.role is not None and self.role >= role


ANONYMOUS = Principal("anonymous", None)


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "alertd_" + secrets.token_urlsafe(32)


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def _check_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(got.hex(), digest)


def _read_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{what} {path}: {e.strerror}") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((lineno, line.split()))
    return out


class Auth:
    def __init__(self, tokens: dict[str, Principal], users: dict[str, tuple[Role, str]]) -> None:
        self.tokens = tokens  # sha256:hex -> principal
        self.users = users  # user -> (role, pbkdf2 hash)

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.users)

    @classmethod
    def from_files(cls, tokens_file: Path | None, basic_auth_file: Path | None) -> Auth:
        """Raises ValueError naming file and line for a malformed entry."""
        tokens: dict[str, Principal] = {}
        users: dict[str, tuple[Role, str]] = {}
        if tokens_file is not None:
            for lineno, parts in _read_lines(tokens_file, "tokens_file"):
                if len(parts) != 3 or not parts[2].startswith("sha256:") or len(parts[2]) != 71:
                    raise ValueError(
                        f"{tokens_file}:{lineno}: expected `NAME ROLE sha256:HEX` "
                        "(create entries with `alertd token add`)"
                    )
                tokens[parts[2]] = Principal(parts[0], Role.parse(parts[1]))
        if basic_auth_file is not None:
            for lineno, parts in _read_lines(basic_auth_file, "basic_auth_file"):
                if len(parts) != 3 or not parts[2].startswith("pbkdf2_sha256$"):
                    raise ValueError(
                        f"{basic_auth_file}:{lineno}: expected `USER ROLE pbkdf2_sha256$...` "
                        "(create entries with `alertd token add-user`)"
                    )
                users[parts[0]] = (Role.parse(parts[1]), parts[2])
        return cls(tokens, users)

    def authenticate(self, header: str | None) -> Principal:
        """The caller named by an Authorization header; ANONYMOUS when none. Bad credentials: 401."""
        if not header:
            return ANONYMOUS
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            p = self.tokens.get(hash_token(value.strip()))
            if p is None:
                raise AuthError(401, "unknown or revoked token")
            return p
        if scheme.lower() == "basic" and value:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AuthError(401, "malformed basic credentials") from None
            entry = self.users.get(user)
            if entry is None or not _check_password(password, entry[1]):
                raise AuthError(401, "wrong user or password")
            return Principal(user, entry[0])
        raise AuthError(401, "expected `Authorization: Bearer TOKEN` (or Basic for configured users)")

    def authorize(self, principal: Principal, needed: Role) -> None:
        """Raise 401/403 unless the principal has the role."""
        if principal.can(needed):
            return
        if not self.enabled:
            if needed is Role.READ:
                return
            raise AuthError(
                403,
                "writes need a token: run `alertd token add NAME --role silence` and set "
                "api.tokens_file in alertd.yaml",
            )
        if principal.role is None:
            raise AuthError(401, f"this needs a token with the {needed.name.lower()} role")
        raise AuthError(
            403, f"token {principal.name!r} has role {principal.role.name.lower()}; this needs {needed.name.lower()}"
        )

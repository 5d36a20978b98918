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

A PBKDF2 check costs tens of milliseconds of CPU by design, so the server never runs one on the
event loop (`Logins`): checks go to a small thread pool behind a bounded queue, an unknown user
costs the same hash as a known one (no finding user names by timing), and a client that keeps
failing is refused for a while without any hashing at all.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "alertd_" + secrets.token_urlsafe(32)


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def _parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a `pbkdf2_sha256$N$SALT$HASH` entry; ValueError if malformed."""
    algo, iterations, salt, digest = stored.split("$")
    n = int(iterations)
    if algo != "pbkdf2_sha256" or not 1 <= n <= 10_000_000:
        raise ValueError(stored)
    return n, bytes.fromhex(salt), bytes.fromhex(digest)


def _check_password(password: str, stored: str) -> bool:
    try:
        iterations, salt, digest = _parse_hash(stored)
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(got, digest)


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
        self._decoy_hash: str | None = None

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
                try:
                    if len(parts) != 3:
                        raise ValueError(parts)
                    _parse_hash(parts[2])
                except ValueError:
                    raise ValueError(
                        f"{basic_auth_file}:{lineno}: expected `USER ROLE pbkdf2_sha256$ITERATIONS$SALT$HASH` "
                        "(create entries with `alertd token add-user`)"
                    ) from None
                users[parts[0]] = (Role.parse(parts[1]), parts[2])
        return cls(tokens, users)

    def _decoy(self) -> str:
        """A hash an unknown user is checked against: as slow as the slowest real one, matching nothing."""
        if self._decoy_hash is None:
            iterations = max((_parse_hash(h)[0] for _, h in self.users.values()), default=PBKDF2_ITERATIONS)
            # a random digest no password hashes to (1 in 2^256): no need to hash anything here
            self._decoy_hash = f"pbkdf2_sha256${iterations}${secrets.token_hex(16)}${secrets.token_hex(32)}"
        return self._decoy_hash

    def _basic(self, value: str) -> tuple[str, str, tuple[Role, str] | None, str]:
        """(user, password, the user's entry or None, the hash to check against) of basic credentials."""
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthError(401, "malformed basic credentials") from None
        entry = self.users.get(user)
        return user, password, entry, entry[1] if entry is not None else self._decoy()

    async def verify(self, header: str | None, logins: Logins, client: str) -> Principal:
        """`authenticate` for the server: basic credentials are checked in `logins`' pool, off the loop."""
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic" or not value:
            return self.authenticate(header)  # none, or a bearer token: one SHA-256, fine on the loop
        if not self.users:  # no users file: nothing to find by timing, and no hash worth spending
            raise AuthError(401, "wrong user or password")
        logins.refuse_if_locked_out(client)
        user, password, entry, stored = self._basic(value)
        ok = await logins.check(password, stored)
        if entry is None or not ok:
            logins.failed(client)
            raise AuthError(401, "wrong user or password")
        logins.succeeded(client)
        return Principal(user, entry[0])

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
            user, password, entry, stored = self._basic(value)
            ok = _check_password(password, stored)  # the decoy for an unknown user: the same work
            if entry is None or not ok:
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


class Logins:
    """Where the API server checks passwords: off the event loop, bounded, and limited per client.

    One per server, kept across reloads of the users file. `workers` threads hash (hashlib drops
    the GIL while it does); at most `max_pending` checks run or wait, more get a 503 at once rather
    than a queue that grows with the attack. A client (address) with `max_failures` failures within
    `window` seconds gets 429s, without any hashing, until the window has passed.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_pending: int = 16,
        max_failures: int = 10,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Half the cores: on a small machine the event loop keeps one for itself.
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self.max_pending = max_pending
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self.pending = 0
        self.refused_busy = 0  # checks refused because max_pending were already running or waiting
        self.refused_locked = 0  # attempts refused because the client failed too often
        self.clients_evicted = 0  # clients forgotten past max_clients (their failures no longer count)
        # client -> (failures, when the first of them was), oldest first: a bounded map, so an
        # attacker cycling source addresses evicts entries instead of growing memory
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None

    async def check(self, password: str, stored: str) -> bool:
        if self.pending >= self.max_pending:
            self.refused_busy += 1
            raise AuthError(503, "too many password checks at once; retry shortly", {"Retry-After": "1"})
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="alertd-password")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, _check_password, password, stored)
        finally:
            self.pending -= 1

    def refuse_if_locked_out(self, client: str) -> None:
        entry = self._failures.get(client)
        if entry is None:
            return
        count, since = entry
        left = since + self.window - self.clock()
        if left <= 0:
            del self._failures[client]
        elif count >= self.max_failures:
            self.refused_locked += 1
            raise AuthError(
                429,
                f"too many failed logins from {client}; retry in {math.ceil(left)} s",
                {"Retry-After": str(math.ceil(left))},
            )

    def failed(self, client: str) -> None:
        count, since = self._failures.pop(client, (0, self.clock()))
        self._failures[client] = (count + 1, since)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
            self.clients_evicted += 1

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

"""Who may do what: token and basic-auth files (hashed, with file:line errors), roles, and
`alertd token add`, which prints a token once and stores only its hash."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from alertd.auth import ANONYMOUS, Auth, AuthError, Principal, Role, hash_password, hash_token
from alertd.cli import main


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def auth(tmp_path: Path) -> Auth:
    (tmp_path / "tokens").write_text(
        "# comments and blank lines are fine\n\n"
        f"ops silence {hash_token('tok-ops')}\nroot admin {hash_token('tok-root')}\n"
    )
    (tmp_path / "users").write_text(f"grafana read {hash_password('pw-grafana-long', iterations=1000)}\n")
    return Auth.from_files(tmp_path / "tokens", tmp_path / "users")


def test_bearer_tokens_and_basic_users_are_recognised(auth: Auth) -> None:
    assert auth.authenticate("Bearer tok-ops") == Principal("ops", Role.SILENCE)
    assert auth.authenticate("bearer tok-root") == Principal("root", Role.ADMIN)
    assert auth.authenticate(basic("grafana", "pw-grafana-long")) == Principal("grafana", Role.READ)
    assert auth.authenticate(None) is ANONYMOUS


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer nope", "unknown or revoked token"),
        ("Bearer ", "expected `Authorization: Bearer TOKEN`"),
        ("Token tok-ops", "expected `Authorization: Bearer TOKEN`"),
        ("Basic !!!notbase64", "malformed basic credentials"),
        ("Basic " + base64.b64encode(b"grafana:wrong").decode(), "wrong user or password"),
        ("Basic " + base64.b64encode(b"nobody:pw-grafana-long").decode(), "wrong user or password"),
    ],
)
def test_bad_credentials_are_401(auth: Auth, header: str, message: str) -> None:
    with pytest.raises(AuthError, match=message) as e:
        auth.authenticate(header)
    assert e.value.status == 401


def test_roles_are_ordered_and_refusals_say_why(auth: Auth) -> None:
    ops = auth.authenticate("Bearer tok-ops")
    auth.authorize(ops, Role.READ)
    auth.authorize(ops, Role.SILENCE)
    with pytest.raises(AuthError, match="role silence; this needs admin") as e:
        auth.authorize(ops, Role.ADMIN)
    assert e.value.status == 403
    with pytest.raises(AuthError, match="needs a token with the read role") as e:
        auth.authorize(ANONYMOUS, Role.READ)
    assert e.value.status == 401


def test_without_files_reads_are_open_and_writes_say_how_to_get_a_token() -> None:
    auth = Auth.from_files(None, None)
    auth.authorize(ANONYMOUS, Role.READ)
    with pytest.raises(AuthError, match="alertd token add NAME --role silence") as e:
        auth.authorize(ANONYMOUS, Role.SILENCE)
    assert e.value.status == 403


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ops silence plaintext-token", r"tokens:2: expected `NAME ROLE sha256:HEX`"),
        ("ops superuser " + hash_token("x"), "unknown role 'superuser'"),
        ("ops " + hash_token("x"), r"tokens:2: expected"),
    ],
)
def test_a_malformed_tokens_file_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "tokens").write_text(f"ok read {hash_token('t')}\n{line}\n")
    with pytest.raises(ValueError, match=message):
        Auth.from_files(tmp_path / "tokens", None)


def test_a_missing_tokens_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tokens_file .*tokens: No such file"):
        Auth.from_files(tmp_path / "tokens", None)


def test_passwords_are_salted(tmp_path: Path) -> None:
    a, b = hash_password("same-password!"), hash_password("same-password!")
    assert a != b and a.startswith("pbkdf2_sha256$")


def test_token_add_prints_the_token_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etc" / "tokens"
    assert main(["token", "add", "ana", "--role", "silence", "--file", str(path)]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("alertd_") and len(token) > 40
    assert "shown only now" in out.err and token not in out.err
    content = path.read_text()
    assert token not in content
    assert content == f"ana silence {hash_token(token)}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Auth.from_files(path, None).authenticate(f"Bearer {token}") == Principal("ana", Role.SILENCE)
    # a second token is appended, the first keeps working
    assert main(["token", "add", "ci", "--role", "read", "--file", str(path)]) == 0
    second = capsys.readouterr().out.strip()
    auth = Auth.from_files(path, None)
    assert auth.authenticate(f"Bearer {token}").name == "ana"
    assert auth.authenticate(f"Bearer {second}") == Principal("ci", Role.READ)

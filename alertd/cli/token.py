"""`alertd token`: create API tokens (stored hashed) and basic-auth users."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from alertd.cli.run import load


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="manage API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    add = tsub.add_parser("add", help="create a token; prints it once and stores only its hash")
    add.add_argument("name", help="who uses it (recorded as the author of their silences)")
    add.add_argument("--role", default="silence", choices=["read", "silence", "admin"])
    add.add_argument("--file", type=Path, help="tokens file (default: the config's api.tokens_file)")
    add.set_defaults(func=add_token)
    user = tsub.add_parser("add-user", help="add a basic-auth user (password read from stdin)")
    user.add_argument("name")
    user.add_argument("--role", default="read", choices=["read", "silence", "admin"])
    user.add_argument("--file", type=Path, help="basic auth file (default: the config's api.basic_auth_file)")
    user.set_defaults(func=add_user)


def _target(args: argparse.Namespace, attr: str) -> Path | None:
    if args.file:
        return Path(args.file)
    config = load(args)
    if config is None:
        return None
    value = getattr(config.api, attr)
    if not value:
        print(f"no api.{attr} in the config: pass --file, and set api.{attr} in alertd.yaml", file=sys.stderr)
        return None
    return config.path(value)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # secrets file: owner only
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")


def add_token(args: argparse.Namespace) -> int:
    path = _target(args, "tokens_file")
    if path is None:
        return 2
    from alertd.auth import Role, hash_token, new_token  # the API's auth stack: for this command only

    token = new_token()
    _append(path, f"{args.name} {Role.parse(args.role).name.lower()} {hash_token(token)}")
    print(token)
    print(
        f"token for {args.name} ({args.role}) added to {path}; it is shown only now. "
        "reload alertd to use it (systemctl reload alertd, kill -HUP, or POST /-/reload).",
        file=sys.stderr,
    )
    return 0


def add_user(args: argparse.Namespace) -> int:
    path = _target(args, "basic_auth_file")
    if path is None:
        return 2
    from alertd.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    if len(password) < 12:
        print("use a password of at least 12 characters", file=sys.stderr)
        return 2
    _append(path, f"{args.name} {args.role} {hash_password(password)}")
    print(f"user {args.name} ({args.role}) added to {path}", file=sys.stderr)
    return 0

"""API keys kept hashed in a file (API_KEYS_FILE): add one, list them, remove one.

    python -m tools.keys add --role staff [--file PATH]   # prints the new key ONCE
    python -m tools.keys list [--file PATH]               # digest prefixes and roles, never keys
    python -m tools.keys remove DIGEST_PREFIX [--file PATH]

The file defaults to API_KEYS_FILE, else DATA_DIR/api_keys. Each line is `sha256:<hex>:role`;
the gateway re-reads it within seconds of a change (gateway/auth.py), no restart needed.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # gateway.auth imports nameko

from gateway.auth import ROLE_PERMISSIONS, keys_file_line, parse_keys_file  # noqa: E402
from roster import config  # noqa: E402

KEY_BYTES = 24  # 192 bits: a hash without salt or stretching is then as good as any


def default_path() -> Path:
    return Path(os.environ.get("API_KEYS_FILE") or config.data_dir() / "api_keys")


def add(path: Path, role: str) -> str:
    """Append a new key with `role` to the file (created 0600); return the key."""
    key = "rk_" + secrets.token_urlsafe(KEY_BYTES)
    line = keys_file_line(key, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    parse_keys_file(existing, str(path))  # never append to a file the gateway would refuse
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as file:
        if existing and not existing.endswith("\n"):
            file.write("\n")
        file.write(line + "\n")
    return key


def remove(path: Path, prefix: str) -> int:
    """Remove the lines whose digest starts with `prefix` (at least 8 hex digits); return how many."""
    if len(prefix) < 8:
        raise ValueError("give at least 8 hex digits of the digest (see `list`)")
    kept, removed = [], 0
    for line in path.read_text().splitlines():
        parts = line.split("#", 1)[0].strip().split(":")
        if len(parts) == 3 and parts[1].startswith(prefix.lower()):
            removed += 1
        else:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept))
    return removed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.keys", description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=None, help="keys file (default API_KEYS_FILE or DATA_DIR/api_keys)")
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="add a key and print it once")
    adding.add_argument("--role", required=True, choices=list(ROLE_PERMISSIONS))
    commands.add_parser("list", help="digest prefixes and roles")
    removing = commands.add_parser("remove", help="remove a key by its digest prefix")
    removing.add_argument("prefix")
    args = parser.parse_args(argv)
    path = args.file or default_path()
    try:
        if args.command == "add":
            key = add(path, args.role)
            print(key)
            print(f"(role {args.role}; stored hashed in {path}; this is the only time the key is shown)",
                  file=sys.stderr)
        elif args.command == "list":
            for hashed, role in parse_keys_file(path.read_text() if path.exists() else "", str(path)):
                print(f"{hashed.hex()[:16]}  {role}")
        else:
            count = remove(path, args.prefix)
            print(f"removed {count} key(s) from {path}", file=sys.stderr)
            return 0 if count else 1
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""API keys and roles: HTTP Basic with the key as user name (what the official client sends).

Keys come from API_KEYS (`key:role,...`, plain) and from the file API_KEYS_FILE (one
`sha256:<hex digest>:role` line per key, stored hashed; `python -m tools.keys add --role staff`
adds one and prints the key once). Either way only digests are kept in memory, and a presented
key is checked by hashing it and comparing the digest with EVERY configured digest through
`hmac.compare_digest`, without stopping at a match: how long the check takes says nothing about
which key matched or how much of one did. The file is re-read when it changes (checked at most
every KEYS_FILE_CHECK_SECONDS), so a key added or removed takes effect without a restart.
"""
import base64
import binascii
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nameko.extensions import SharedExtension

from roster.errors import Forbidden, Unauthorized

logger = logging.getLogger(__name__)

READ, WRITE, ADMIN = "read", "write", "admin"

ROLE_PERMISSIONS = {
    "read_only": frozenset({READ}),
    "staff": frozenset({READ, WRITE}),
    "admin": frozenset({READ, WRITE, ADMIN}),
    "owner": frozenset({READ, WRITE, ADMIN}),
}

PERMISSION_WORDING = {
    WRITE: "change data (staff, admin or owner)",
    ADMIN: "do this (admin or owner)",
}

HASH_SCHEME = "sha256"
KEYS_FILE_CHECK_SECONDS = 2.0


def parse_api_keys(spec: str) -> dict[str, str]:
    """Return {key: role} from `key:role,key2:role2`; an unknown role is a configuration error."""
    keys = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, _, role = item.rpartition(":")
        if not key or role not in ROLE_PERMISSIONS:
            raise ValueError(
                f"API_KEYS entry {item!r} must be key:role with role one of {', '.join(ROLE_PERMISSIONS)}"
            )
        keys[key] = role
    return keys


def digest(key: str) -> bytes:
    """The stored form of a key: its SHA-256 (keys are long random strings, so no salt or stretching)."""
    return hashlib.sha256(key.encode()).digest()


def keys_file_line(key: str, role: str) -> str:
    """The API_KEYS_FILE line that grants `key` the `role` (without the newline)."""
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLE_PERMISSIONS)}")
    return f"{HASH_SCHEME}:{digest(key).hex()}:{role}"


def parse_keys_file(text: str, source: str = "API_KEYS_FILE") -> list[tuple[bytes, str]]:
    """Return [(digest, role)] from the lines of a keys file; blank lines and `#` comments are skipped.

    A malformed line is a configuration error naming its line number (never a silent skip: a key
    the operator thinks is revoked or granted must be exactly that).
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] != HASH_SCHEME or parts[2] not in ROLE_PERMISSIONS:
            raise ValueError(f"{source} line {number}: expected {HASH_SCHEME}:<64 hex digits>:<role> with role "
                             f"one of {', '.join(ROLE_PERMISSIONS)}")
        try:
            hashed = bytes.fromhex(parts[1])
        except ValueError:
            hashed = b""
        if len(hashed) != 32:
            raise ValueError(f"{source} line {number}: the digest must be 64 hex digits")
        entries.append((hashed, parts[2]))
    return entries


def match_role(entries: list[tuple[bytes, str]], key: str | None) -> str | None:
    """Return the role of `key` among (digest, role) entries, in time independent of which one matches.

    Every entry is compared (no early exit), with a constant-time comparison; an absent key is
    compared too, against a digest no key has, so "no key" and "wrong key" cost the same.
    """
    presented = digest(key or "")
    role = None
    for hashed, entry_role in entries:
        if hmac.compare_digest(presented, hashed) and key:
            role = entry_role  # no break: the remaining comparisons run either way
    return role


def key_from_header(header: str | None) -> str | None:
    """Return the API key carried by an `Authorization: Basic ...` header, or None."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def check_permission(role: str | None, permission: str) -> None:
    """Raise 401 for no or an unknown key, 403 when the key's role lacks `permission`."""
    if role is None:
        raise Unauthorized("No valid API key given. Send it as the HTTP Basic user name.")
    if permission not in ROLE_PERMISSIONS[role]:
        raise Forbidden(f"This API key's role ({role}) may not {PERMISSION_WORDING[permission]}.")


@dataclass
class KeysFile:
    """API_KEYS_FILE, re-read when its modification time or size changes."""

    path: Path
    entries: list
    stamp: tuple | None = None
    checked_at: float = 0.0
    text: str = ""

    def refresh(self, now: float, force: bool = False) -> None:
        if not force and now - self.checked_at < KEYS_FILE_CHECK_SECONDS:
            return
        self.checked_at = now
        try:
            stat = self.path.stat()
        except OSError as error:
            if force:
                raise ValueError(f"API_KEYS_FILE {self.path}: {error.strerror}")
            return  # keep the keys we have rather than lock everyone out
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self.stamp:
            return
        text = self.path.read_text()
        try:
            self.entries = parse_keys_file(text, str(self.path))
        except ValueError:
            if force:
                raise
            logger.error("API_KEYS_FILE %s is malformed; keeping the keys read before", self.path, exc_info=True)
            return
        self.stamp, self.text = stamp, text


class ApiKeys(SharedExtension):
    """The gateway's keys (API_KEYS and API_KEYS_FILE), held as digests only."""

    def __init__(self):
        self.fixed: list[tuple[bytes, str]] = []
        self.file: KeysFile | None = None
        self.spec = ""

    def setup(self):
        self.spec = os.environ.get("API_KEYS", "")
        self.fixed = [(digest(key), role) for key, role in parse_api_keys(self.spec).items()]
        path = os.environ.get("API_KEYS_FILE")
        if path:
            self.file = KeysFile(Path(path), [])
            self.file.refresh(time.monotonic(), force=True)

    def entries(self) -> list[tuple[bytes, str]]:
        if self.file is None:
            return self.fixed
        self.file.refresh(time.monotonic())
        return self.fixed + self.file.entries

    def role_for(self, header: str | None) -> str | None:
        return match_role(self.entries(), key_from_header(header))

    def scope_of(self, header: str | None) -> str:
        """Return a short stable name for the API key in `header` (never the key itself)."""
        key = key_from_header(header) or ""
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def secret_material(self) -> str:
        """What signing keys are derived from: changes whenever the configured keys change."""
        if self.file is not None:
            self.file.refresh(time.monotonic())
        return self.spec + "\x00" + (self.file.text if self.file is not None else "")

    def authorize(self, header: str | None, permission: str) -> str:
        """Return the role of the key in `header`; raise 401/403 as check_permission does."""
        role = self.role_for(header)
        check_permission(role, permission)
        return role

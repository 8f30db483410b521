"""API keys and roles: HTTP Basic with the key as user name (what the official client sends)."""
import base64
import binascii
import hashlib
import os

from nameko.extensions import SharedExtension

from roster.errors import Forbidden, Unauthorized

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


class ApiKeys(SharedExtension):
    """The gateway's keys, read from API_KEYS once per process; header lookups are memoised."""

    def __init__(self):
        self.roles: dict[str, str] = {}
        self._by_header: dict[str, str | None] = {}

    def setup(self):
        self.roles = parse_api_keys(os.environ.get("API_KEYS", ""))

    def role_for(self, header: str | None) -> str | None:
        if header in self._by_header:
            return self._by_header[header]
        role = self.roles.get(key_from_header(header))
        if len(self._by_header) < 10_000:
            self._by_header[header] = role
        return role

    def scope_of(self, header: str | None) -> str:
        """Return a short stable name for the API key in `header` (never the key itself)."""
        key = key_from_header(header) or ""
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def authorize(self, header: str | None, permission: str) -> None:
        check_permission(self.role_for(header), permission)

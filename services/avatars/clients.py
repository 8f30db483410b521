"""Outbound HTTP for avatars: one image from one configured host, with every limit applied.

`ImageFetcher.fetch` answers in two ways, and the difference matters to the cache:
- `Image` or `None`: the source gave a definite answer. None means it has no usable image: 404/410
  (or 400/422), a body that is not an accepted raster image (HTML, SVG, a lying signature), a body
  over `max_bytes`, a redirect to another host (never followed), or too many redirects. Each
  refusal is logged at INFO with its reason.
- `FetchFailed`: the source could not answer this time (5xx, 429, any other status, a connect or
  read timeout, a body slower than the total deadline, a connection error). `domain.resolve`
  counts it as "none" and reports it; the service may retry sooner than its max age.

Only the base URL's scheme, host and port are ever contacted: the path is built from
percent-encoded segments, redirects are followed only within that origin, and the environment's
proxies and .netrc are ignored (`trust_env = False`).
"""
import logging
import re
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote, urljoin, urlsplit

import requests

from roster.breaker import CircuitBreaker
from roster.outbound import BodyInterrupted, BodyTooSlow, read_capped
from services.avatars.domain import (
    CLEARBIT, GRAVATAR, REMOTE_IMAGE_TYPES, Fetcher, Image, is_public_host_name,
)

DEFAULT_CLEARBIT_LOGO_URL = "https://logo.clearbit.com"
DEFAULT_GRAVATAR_URL = "https://www.gravatar.com/avatar"
DEFAULT_TIMEOUT = (2.0, 3.0)  # (connect, read) seconds
DEFAULT_MAX_BYTES = 512 * 1024
DEFAULT_CIRCUIT = (5, 30.0)  # failures in a row, then seconds a source is not asked (roster.breaker)
MAX_REDIRECTS = 3
CHUNK_BYTES = 16 * 1024
NOT_THERE = frozenset({400, 404, 410, 422})  # the source says it has nothing for this key
GRAVATAR_HASH = re.compile(r"[0-9a-f]{64}|[0-9a-f]{32}")  # SHA-256 today; MD5 still answered
# How each accepted type starts: a body that does not is refused, whatever its header says.
SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/x-icon": (b"\x00\x00\x01\x00",),
    "image/vnd.microsoft.icon": (b"\x00\x00\x01\x00",),
    "image/webp": (b"RIFF",),  # and "WEBP" at offset 8, checked below
}

log = logging.getLogger(__name__)


class FetchFailed(Exception):
    """The source could not answer this time; `reason` says why, `url` what was asked."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{reason} ({url})")
        self.url = url
        self.reason = reason


class ImageFetcher:
    """Fetches raster images from one base URL, never from anywhere else."""

    def __init__(self, base_url: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 max_bytes: int = DEFAULT_MAX_BYTES, allowed_types=REMOTE_IMAGE_TYPES,
                 total_timeout: float | None = None):
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc \
                or parts.query or parts.fragment:
            raise ValueError(f"base_url: {base_url!r} must be an http(s) URL with a host and no query")
        unknown = set(allowed_types) - set(SIGNATURES)
        if unknown:
            raise ValueError(f"allowed_types: {sorted(unknown)} are not accepted raster image types")
        if len(timeout) != 2 or min(timeout) <= 0:
            raise ValueError("timeout: must be (connect seconds, read seconds), both positive")
        if max_bytes <= 0:
            raise ValueError("max_bytes: must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout = (float(timeout[0]), float(timeout[1]))
        self.total_timeout = total_timeout if total_timeout is not None else sum(self.timeout)
        self.max_bytes = max_bytes
        self.allowed_types = frozenset(allowed_types)
        self._origin = _origin(self.base_url)
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies, no .netrc: only the configured host is contacted
        self._session.headers.update({
            "User-Agent": "roster-avatars/1",
            "Accept": ", ".join(sorted(self.allowed_types)),
            "Accept-Encoding": "identity",  # images are compressed already; no decompression bombs
        })

    def fetch(self, path: str, params: Mapping[str, str] | None = None) -> Image | None:
        """Return the image at base_url/path, None when the source has none; FetchFailed on outages."""
        url = self._url(path)
        deadline = time.monotonic() + self.total_timeout
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(url, params)
            with response:
                if not response.is_redirect:
                    return self._image(response, url, deadline)
                target = urljoin(url, response.headers["location"])
            if _origin(target) != self._origin:
                log.info("avatar fetch %s: redirect to another host refused (%s)", url, target)
                return None
            url, params = target, None  # the Location carries its own query
        log.info("avatar fetch %s: more than %d redirects", url, MAX_REDIRECTS)
        return None

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def _url(self, path: str) -> str:
        segments = path.split("/") if isinstance(path, str) else [""]
        if any(segment in ("", ".", "..") for segment in segments):
            raise ValueError(f"path: {path!r} must be relative segments without '.' or '..'")
        return self.base_url + "/" + "/".join(quote(segment, safe="") for segment in segments)

    def _send(self, url: str, params) -> requests.Response:
        request = self._session.prepare_request(requests.Request("GET", url, params=params))
        if _origin(request.url) != self._origin:  # belt and braces: the URL is built from base_url
            raise ValueError(f"path: {url!r} leaves {self.base_url}")
        try:
            return self._session.send(request, timeout=self.timeout, stream=True, allow_redirects=False)
        except requests.Timeout as error:
            raise FetchFailed(url, "timed out") from error
        except requests.RequestException as error:
            raise FetchFailed(url, f"connection failed: {type(error).__name__}") from error

    def _image(self, response: requests.Response, url: str, deadline: float) -> Image | None:
        status = response.status_code
        if status in NOT_THERE:
            return None
        if not 200 <= status < 300:
            raise FetchFailed(url, f"answered HTTP {status}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in self.allowed_types:
            return _refused(url, f"content type {content_type or 'missing'!r} is not an accepted image")
        if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
            return _refused(url, "compressed body refused")
        if _declared_length(response) > self.max_bytes:
            return _refused(url, f"declared length over {self.max_bytes} bytes")
        body = self._read(response, url, deadline)
        if body is None:
            return _refused(url, f"body over {self.max_bytes} bytes")
        if not _looks_like(content_type, body):
            return _refused(url, f"body is not a {content_type}")
        return Image(content_type=content_type, body=body)

    def _read(self, response: requests.Response, url: str, deadline: float) -> bytes | None:
        try:
            body, whole = read_capped(response, max_bytes=self.max_bytes, deadline=deadline, chunk_bytes=CHUNK_BYTES)
        except BodyTooSlow:
            raise FetchFailed(url, f"body took longer than {self.total_timeout} s") from None
        except BodyInterrupted as error:
            raise FetchFailed(url, f"body interrupted: {error}") from error
        return body if whole else None


def clearbit_logo(fetcher: ImageFetcher, domain: str) -> Image | None:
    """Return Clearbit's logo for a public domain ({CLEARBIT_LOGO_URL}/{domain}), or None."""
    if not is_public_host_name(domain):
        raise ValueError(f"domain: {domain!r} is not a public host name")
    return fetcher.fetch(domain)


def gravatar(fetcher: ImageFetcher, email_hash: str) -> Image | None:
    """Return the Gravatar image for an email hash ({GRAVATAR_URL}/{hash}?d=404&s=200), or None."""
    if not isinstance(email_hash, str) or not GRAVATAR_HASH.fullmatch(email_hash):
        raise ValueError("email_hash: must be a lower-case hex SHA-256 (or MD5) digest")
    return fetcher.fetch(email_hash, {"d": "404", "s": "200"})


@dataclass(frozen=True)
class FetchSettings:
    """Where the sources live and the limits every fetch obeys."""

    clearbit_logo_url: str = DEFAULT_CLEARBIT_LOGO_URL
    gravatar_url: str = DEFAULT_GRAVATAR_URL
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    circuit: tuple[int, float] = DEFAULT_CIRCUIT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "FetchSettings":
        """Return the settings from CLEARBIT_LOGO_URL, GRAVATAR_URL, AVATAR_FETCH_TIMEOUT, AVATAR_MAX_BYTES
        and AVATAR_SOURCE_CIRCUIT.

        AVATAR_FETCH_TIMEOUT is seconds: one number for both connect and read, or "connect,read".
        AVATAR_SOURCE_CIRCUIT is "failures,seconds": after that many failed fetches in a row a
        source is not asked for that many seconds. An unset or empty variable takes the default.
        """
        return cls(
            clearbit_logo_url=environ.get("CLEARBIT_LOGO_URL") or DEFAULT_CLEARBIT_LOGO_URL,
            gravatar_url=environ.get("GRAVATAR_URL") or DEFAULT_GRAVATAR_URL,
            timeout=_timeout_setting(environ.get("AVATAR_FETCH_TIMEOUT")),
            max_bytes=_max_bytes_setting(environ.get("AVATAR_MAX_BYTES")),
            circuit=_circuit_setting(environ.get("AVATAR_SOURCE_CIRCUIT")),
        )


def avatar_fetchers(settings: FetchSettings) -> dict[str, Fetcher]:
    """Return the fetchers `domain.resolve` takes, one per source, built from the settings.

    Each source has its own circuit breaker: one that keeps failing (down, black-holed,
    answering 5xx or 429) is not asked for a while, so events do not each wait out its
    timeouts; what it refuses raises `roster.breaker.CircuitOpen`, which counts as a failure
    of the source (the avatar is incomplete and asked again later).
    """
    limits = {"timeout": settings.timeout, "max_bytes": settings.max_bytes}
    logos = ImageFetcher(settings.clearbit_logo_url, **limits)
    avatars = ImageFetcher(settings.gravatar_url, **limits)
    failures, cool_down = settings.circuit
    circuits = {source: CircuitBreaker(f"avatar source {source}", failures=failures, cool_down=cool_down,
                                       counted=(FetchFailed,)) for source in (CLEARBIT, GRAVATAR)}
    return {
        CLEARBIT: lambda domain: circuits[CLEARBIT].call(clearbit_logo, logos, domain),
        GRAVATAR: lambda email_hash: circuits[GRAVATAR].call(gravatar, avatars, email_hash),
    }


def _timeout_setting(value: str | None) -> tuple[float, float]:
    if not value:
        return DEFAULT_TIMEOUT
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) <= 0:
        raise ValueError(f"AVATAR_FETCH_TIMEOUT: {value!r} must be seconds, e.g. '3' or '2,5'")
    return numbers[0], numbers[1]


def _max_bytes_setting(value: str | None) -> int:
    if not value:
        return DEFAULT_MAX_BYTES
    if not value.strip().isdigit() or int(value) <= 0:
        raise ValueError(f"AVATAR_MAX_BYTES: {value!r} must be a positive whole number of bytes")
    return int(value)


def _circuit_setting(value: str | None) -> tuple[int, float]:
    if not value:
        return DEFAULT_CIRCUIT
    failures, _, seconds = value.partition(",")
    try:
        parsed = int(failures), float(seconds)
    except ValueError:
        parsed = (0, 0.0)
    if parsed[0] < 1 or not 0 < parsed[1] < float("inf"):
        raise ValueError(f"AVATAR_SOURCE_CIRCUIT: {value!r} must be 'failures,seconds', e.g. '5,30'")
    return parsed


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ("", "", 0)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), port or (443 if scheme == "https" else 80)


def _declared_length(response: requests.Response) -> int:
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


def _looks_like(content_type: str, body: bytes) -> bool:
    if not body.startswith(SIGNATURES[content_type]):
        return False
    return content_type != "image/webp" or body[8:12] == b"WEBP"


def _refused(url: str, reason: str) -> None:
    log.info("avatar fetch %s: %s", url, reason)
    return None

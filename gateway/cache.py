"""The gateway's cache of rendered customer records, consistent across gateway processes.

A GET through RabbitMQ costs ~7 ms of CPU across gateway, broker and service; answering
from memory costs a fraction of that. Each gateway process keeps its own entries, but the
version of every key lives in a small file mapped into every gateway process on the host
(`SharedVersions`). An entry is served only while its key's version is the one it was filled
under, so:

* a write through any gateway process bumps the key's version before the client gets its
  2xx, and the very next GET through any process on the host misses and reads the new state
  (read-your-writes with GATEWAY_PROCESSES > 1);
* a change made elsewhere (an event consumer, another host's gateway) arrives as a
  `customer_updated|deleted|merged` broadcast and bumps the version the same way;
* a fill that raced an invalidation is not stored (the version moved while it was in flight);
* GATEWAY_CACHE_TTL bounds staleness if a broadcast is ever missed (e.g. while reconnecting).
"""
import fcntl
import logging
import mmap
import os
import time
import zlib
from array import array
from collections import OrderedDict
from pathlib import Path

from nameko.extensions import DependencyProvider, SharedExtension

from roster import config

logger = logging.getLogger(__name__)

SLOTS = 1 << 16  # keys hash onto slots; a collision only costs an extra miss


class SharedVersions:
    """Per-key version counters in a file every gateway process on this host maps."""

    def __init__(self, path: Path | None):
        self._fd = None
        if path is not None:
            try:
                self._open(path)
                return
            except OSError as error:
                logger.warning("gateway cache: cannot share versions through %s (%s); this process "
                               "keeps its own, so read-your-writes holds within it only", path, error)
        self._slots = array("Q", bytes(SLOTS * 8))

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < SLOTS * 8:
            os.ftruncate(fd, SLOTS * 8)
        self._map = mmap.mmap(fd, SLOTS * 8)
        self._slots = memoryview(self._map).cast("Q")
        self._fd = fd

    @staticmethod
    def slot(key: str) -> int:
        return zlib.crc32(key.encode()) % SLOTS  # stable across processes, unlike hash()

    def of(self, key: str) -> int:
        return self._slots[self.slot(key)]

    def bump(self, key: str) -> int:
        """Advance the key's version (atomically across processes); return the new one."""
        index = self.slot(key)
        if self._fd is None:
            self._slots[index] += 1
            return self._slots[index]
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 8, index * 8)
        try:
            self._slots[index] = value = self._slots[index] + 1
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 8, index * 8)
        return value


class RecordCache(SharedExtension):
    """Rendered answers by key (a customer uuid), valid while the key's shared version holds."""

    def __init__(self):
        self.max_entries = 0
        self.ttl = 0.0
        self.versions = None
        self._entries: OrderedDict[str, tuple[float, int, bytes]] = OrderedDict()

    def setup(self):
        self.max_entries = int(os.environ.get("GATEWAY_CACHE_ENTRIES", "50000"))
        self.ttl = float(os.environ.get("GATEWAY_CACHE_TTL", "60"))
        self.versions = SharedVersions(config.data_dir() / "gateway-cache.versions")

    def version(self, key: str) -> int:
        """Return the key's version now: read it before fetching what you will `put`."""
        return self.versions.of(key)

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, version, body = entry
        if version != self.versions.of(key) or time.monotonic() - stored_at > self.ttl:
            self._entries.pop(key, None)
            return None
        return body

    def put(self, key: str, body: bytes, version: int) -> None:
        """Store `body`, fetched after `version` was read, unless the key changed since."""
        if self.max_entries <= 0 or version != self.versions.of(key):
            return
        self._entries[key] = (time.monotonic(), version, body)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, *keys: str) -> None:
        """Make every gateway process on this host stop serving these keys."""
        for key in keys:
            self.versions.bump(key)
            self._entries.pop(key, None)


class RecordCacheDependency(DependencyProvider):
    """Gives route handlers the process's RecordCache (to invalidate after a write)."""

    record_cache = RecordCache()

    def get_dependency(self, worker_ctx):
        return self.record_cache

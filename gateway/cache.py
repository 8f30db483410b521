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
* a process whose broadcast listener lost the broker drops its own entries when it is back
  (broadcasts may have been missed meanwhile); GATEWAY_CACHE_TTL bounds staleness otherwise.
"""
import fcntl
import logging
import mmap
import os
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nameko.extensions import DependencyProvider, SharedExtension

from roster import config
from roster.broadcast import BroadcastListener
from roster.errors import RosterError
from roster.timestamps import parse

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
        self._slots = memoryview(bytearray(SLOTS * 8)).cast("Q")

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


GONE = object()  # what `newest` holds for a record that was deleted or merged away


@dataclass(frozen=True)
class Entry:
    stored_at: float
    version: int  # the key's host-wide version when the answer was fetched or written
    revision: datetime | None  # the record's updated_at, when the answer carried one
    body: bytes


class RecordCache(SharedExtension):
    """Rendered answers by key (a customer uuid), valid while the key's version holds.

    A write through any gateway process on the host bumps the key's host-wide version before
    answering, so a GET after it never sees the old copy there. A broadcast says the record
    changed elsewhere and names its revision (the record's updated_at): this process remembers
    the newest revision it heard of, and keeps or stores only answers at least that new. So the
    write's own broadcast, whether it arrives before or after the write's answer, does not
    throw the answer away, and a fill that read the record before a change is not stored.
    """

    def __init__(self):
        self.max_entries = 0
        self.ttl = 0.0
        self.versions = None
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._newest: OrderedDict[str, object] = OrderedDict()  # key -> newest revision heard of, or GONE

    def setup(self):
        self.max_entries = int(os.environ.get("GATEWAY_CACHE_ENTRIES", "50000"))
        self.ttl = float(os.environ.get("GATEWAY_CACHE_TTL", "60"))
        self.versions = SharedVersions(config.data_dir() / "gateway-cache.versions")

    def token(self, key: str) -> int:
        """Return the key's version now: read it before fetching or writing what you will store."""
        return self.versions.of(key)

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.version != self.versions.of(key) or time.monotonic() - entry.stored_at > self.ttl \
                or not self._current(key, entry.revision):
            self._entries.pop(key, None)
            return None
        return entry

    def put(self, key: str, body: bytes, token: int, revision: datetime | None = None) -> None:
        """Store `body`, fetched after `token` was read, unless the key changed since."""
        if self.max_entries > 0 and token == self.versions.of(key) and self._current(key, revision):
            self._store(key, Entry(time.monotonic(), token, revision, body))

    def written(self, key: str, body: bytes | None, token: int, revision: datetime | None) -> None:
        """A write of `key` succeeded with answer `body`: every process on the host stops serving the
        old copy, and this one keeps `body` as the new copy unless another write came between."""
        version = self.versions.bump(key)
        self._entries.pop(key, None)
        if body is not None and revision is not None and version == token + 1:
            self.put(key, body, version, revision)

    def changed_elsewhere(self, key: str, revision: datetime | None) -> None:
        """A broadcast says the record changed (to `revision`, when it says): keep only what is that new."""
        if revision is None:
            self._entries.pop(key, None)
            return
        newest = self._newest.get(key)
        if newest is not GONE and (newest is None or revision > newest):
            self._remember(key, revision)
        entry = self._entries.get(key)
        if entry is not None and not self._current(key, entry.revision):
            self._entries.pop(key, None)

    def gone(self, key: str) -> None:
        """A broadcast says the record was deleted or merged away: never serve or store it again."""
        self._remember(key, GONE)
        self._entries.pop(key, None)

    def forget_all(self) -> None:
        """Drop this process's entries (broadcasts may have been missed); versions stay as they are."""
        self._entries.clear()

    def invalidate(self, *keys: str) -> None:
        """Make every gateway process on this host stop serving these keys."""
        for key in keys:
            self.versions.bump(key)
            self._entries.pop(key, None)

    def _current(self, key: str, revision: datetime | None) -> bool:
        newest = self._newest.get(key)
        if newest is None:
            return True
        return newest is not GONE and revision is not None and revision >= newest

    def _remember(self, key: str, revision) -> None:
        self._newest[key] = revision
        self._newest.move_to_end(key)
        if len(self._newest) > max(self.max_entries, 1):
            self._newest.popitem(last=False)

    def _store(self, key: str, entry: Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RecordCacheDependency(DependencyProvider):
    """Gives route handlers the process's RecordCache (to invalidate after a write), and keeps it
    in step with changes made elsewhere: `customer_updated|deleted|merged` from every process's
    broadcast listener (roster/broadcast.py: plain calls, no nameko worker per event)."""

    record_cache = RecordCache()
    listener = BroadcastListener()

    def setup(self):
        self.listener.listen("customers", "customer_updated", self._updated)
        self.listener.listen("customers", "customer_deleted", self._deleted)
        self.listener.listen("customers", "customer_merged", self._merged)
        self.listener.on_reconnect(self.record_cache.forget_all)

    def get_dependency(self, worker_ctx):
        return self.record_cache

    def _updated(self, source: str, event: str, payload: dict) -> None:
        self.record_cache.changed_elsewhere(payload["uuid"], revision_in(payload))

    def _deleted(self, source: str, event: str, payload: dict) -> None:
        self.record_cache.gone(payload["uuid"])

    def _merged(self, source: str, event: str, payload: dict) -> None:
        self.record_cache.gone(payload["from_uuid"])
        self.record_cache.changed_elsewhere(payload["into_uuid"], None)  # its customer_updated follows


def revision_in(payload: dict):
    """The record's revision a customer_updated event carries (None for an older event without one)."""
    try:
        return parse(payload["updated_at"], "updated_at") if payload.get("updated_at") else None
    except RosterError:
        return None

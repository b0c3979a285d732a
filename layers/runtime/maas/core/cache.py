"""A least-recently-used cache bounded by bytes and by count, for loaded model versions.

An execution environment that has served many versions (promotions, rollbacks, pinned versions
behind ``/versions/{v}`` routes) must not run out of memory or ``/tmp``. Each entry has a size;
when an insertion goes over the bound, the least recently used entries that nobody protects are
evicted and handed to ``on_evict`` (which unloads the session and deletes the cached files).
An entry larger than the bound on its own is still kept: serving it beats refusing it. The count
bound (``max_entries``) caps open sessions whatever their size; ``admits`` says whether one more
can come in (only when every entry is protected can it not).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection


class ByteLRU[K, V]:
    """Not thread-safe on its own: the model service calls it under its lock."""

    def __init__(
        self, max_bytes: int, on_evict: Callable[[K, V], None] | None = None, max_entries: int | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._on_evict = on_evict
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[K]:
        """Least recently used first."""
        return list(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, size: int, protected: Collection[K] = ()) -> list[K]:
        """Insert ``value`` and evict what no longer fits; returns the evicted keys."""
        self._entries[key] = (value, max(0, size))
        self._entries.move_to_end(key)
        return self.shrink(keep={key, *protected})

    def _over(self) -> bool:
        too_many = self.max_entries is not None and len(self._entries) > self.max_entries
        return too_many or self.total_bytes > self.max_bytes

    def admits(self, key: K, protected: Collection[K] = ()) -> bool:
        """Whether ``key`` can be inserted within the count bound: it is there already, there is
        room, or some entry nobody protects can make room."""
        if key in self._entries or self.max_entries is None or len(self._entries) < self.max_entries:
            return True
        return any(candidate not in protected for candidate in self._entries)

    def shrink(self, keep: Collection[K] = ()) -> list[K]:
        evicted: list[K] = []
        for candidate in list(self._entries):
            if not self._over():
                break
            if candidate in keep:
                continue
            evicted.append(candidate)
            self.pop(candidate)
        return evicted

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        if found is None:
            return None
        if self._on_evict is not None:
            self._on_evict(key, found[0])
        return found[0]

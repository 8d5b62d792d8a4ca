"""Write item fields into the online store (the layout is ``runtime/online.py``'s).

Every update is partial: the fields given are written, the others keep their value, and an item the
store has never seen gets NaN (unset: the build's value) for the fields not given. Each item is written
with ``SET key <all unset> NX`` then ``SETRANGE`` per field, all items of one call in one MULTI/EXEC
transaction: a reader never sees half an update, and concurrent writers of different fields do not
overwrite each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.online import ONLINE_FIELDS, SNAPSHOT_FILE, encode, field_offset, item_key


class UpdateError(ValueError):
    """An update that cannot be applied; the message names the item and the field."""


@dataclass(frozen=True)
class ItemUpdate:
    item_id: int
    values: Mapping[str, float]


def check(update: ItemUpdate, where: str = "") -> ItemUpdate:
    at = f"{where}: " if where else ""
    if not update.values:
        raise UpdateError(f"{at}item {update.item_id}: no field to update (fields: {', '.join(ONLINE_FIELDS)})")
    for name, value in update.values.items():
        if name not in ONLINE_FIELDS:
            raise UpdateError(f"{at}item {update.item_id}: unknown field {name!r} (fields: {', '.join(ONLINE_FIELDS)})")
        if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
            raise UpdateError(f"{at}item {update.item_id}: {name} must be a finite number, got {value!r}")
        if name == "price" and float(value) <= 0:
            raise UpdateError(f"{at}item {update.item_id}: price must be > 0, got {value}")
        if name == "stock" and float(value) < 0:
            raise UpdateError(f"{at}item {update.item_id}: stock must be >= 0, got {value}")
    return update


class OnlineWriter:
    """Applies updates to a Redis; ``prefix`` must be the serving side's ``SHOPRANK_ONLINE_PREFIX``."""

    def __init__(self, client: Any, prefix: str = "shoprank", chunk: int = 1000):
        self.client = client
        self.prefix = prefix
        self.chunk = chunk
        self._unset = encode({})

    def apply(self, updates: Iterable[ItemUpdate]) -> int:
        """Write the updates (checked first: nothing is written if one is invalid); returns how many."""
        return self.write([check(u) for u in updates])

    def write(self, batch: list[ItemUpdate]) -> int:
        """Write updates that ``check`` has passed already."""
        for start in range(0, len(batch), self.chunk):
            pipe = self.client.pipeline(transaction=True)
            for u in batch[start : start + self.chunk]:
                key = item_key(self.prefix, u.item_id)
                pipe.set(key, self._unset, nx=True)
                for name, value in u.values.items():
                    pipe.setrange(key, field_offset(name), np.array([value], "<f4").tobytes())
            pipe.execute()
        return len(batch)

    def set_items(self, item_ids: Sequence[int], **fields: Sequence[float]) -> int:
        """Bulk: the same fields for many items, e.g. ``set_items(ids, price=p, stock=s)``."""
        columns = {k: np.asarray(v, np.float64) for k, v in fields.items()}
        for name, col in columns.items():
            if len(col) != len(item_ids):
                raise UpdateError(f"{name}: {len(col)} values for {len(item_ids)} items")
        return self.apply(
            ItemUpdate(int(i), {k: float(col[n]) for k, col in columns.items()}) for n, i in enumerate(item_ids)
        )

    def seed(self, repository: Path) -> int:
        """The build's snapshot of every item (``search_features/1/online_snapshot.npz``)."""
        path = Path(repository) / "search_features" / "1" / SNAPSHOT_FILE
        if not path.exists():
            raise UpdateError(f"{path} is missing: build the repository first (make build)")
        with np.load(path) as snap:
            return self.set_items(snap["item_id"].tolist(), price=snap["price"], stock=snap["stock"])

    def clear(self) -> int:
        """Delete every item key of this prefix (tests, or a shop starting over)."""
        keys = list(self.client.scan_iter(match=f"{self.prefix}:item:*", count=1000))
        return int(self.client.delete(*keys)) if keys else 0

"""Tables read through the page cache: mapped ``.npy`` files, read in at load, without readahead after.

Every instance of every model maps the same files (the build hard-links them between models), so the
page cache holds one copy for all of them. Two things keep the per-request gathers fast:

* ``map_npy`` advises ``MADV_RANDOM``: a request reads a few hundred scattered rows, and without the
  advice each first touch of a page reads ahead up to ``read_ahead_kb`` (8 MB on this project's machines)
  of rows no request asked for;
* the pages are read in at load (``MADV_POPULATE_READ``, Linux 5.14+; else ``MADV_WILLNEED``,
  asynchronous): ``map_npy`` on its own mapping, ``warm`` for files other code maps (the FAISS index),
  so the first requests after a start do not wait on the disk.
  ``SHOPRANK_WARM=0`` turns it off (e.g. a node with less memory than its tables: the kernel then keeps
  the pages that requests use).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.arrays import Array

MADV_POPULATE_READ = 22  # linux/mman.h (Linux 5.14+); Python 3.11's mmap module does not name it
WARM_ENV = "SHOPRANK_WARM"


def npy_layout(path: str | Path) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """``(shape, fortran order, dtype, offset of the first value)`` of a ``.npy`` file, from its header."""
    fmt: Any = np.lib.format  # its functions carry no type annotations
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return tuple(shape), bool(fortran), np.dtype(dtype), f.tell()


def map_npy(path: str | Path, random_access: bool = True) -> Array:
    """A read-only array over the mapped ``.npy`` file (no copy; ``np.frombuffer`` on an ``mmap``), its
    pages read in now (``warm``'s populate on this mapping)."""
    shape, fortran, dtype, offset = npy_layout(path)
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return np.zeros(shape, dtype)
    if dtype.hasobject:
        raise ValueError(f"{path}: an object array cannot be mapped")
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays mapped while the array lives
    _populate(mapped)
    if random_access:
        mapped.madvise(mmap.MADV_RANDOM)
    flat = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def is_mapped(array: Array) -> bool:
    """Whether ``array`` reads its values from an ``mmap`` (not a private copy)."""
    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def warm_enabled() -> bool:
    return os.environ.get(WARM_ENV, "1") != "0"


def _populate(mapped: mmap.mmap) -> None:
    """Read a mapping's pages in now (a no-op with ``SHOPRANK_WARM=0``)."""
    if not warm_enabled():
        return
    try:
        mapped.madvise(MADV_POPULATE_READ)
    except OSError:  # an older kernel: start reading, do not wait
        mapped.madvise(mmap.MADV_WILLNEED)


def warm(*paths: str | Path) -> None:
    """Read the files' pages into the page cache now, for files mapped by other code (the FAISS index);
    ``map_npy`` does it for the tables it maps. A no-op with ``SHOPRANK_WARM=0``."""
    if not warm_enabled():
        return
    for path in paths:
        if os.path.getsize(path) == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            _populate(mapped)


def save_tables(arrays: dict[str, Array], folder: Path, prefix: str = "") -> None:
    """One ``<prefix><name>.npy`` per array in ``folder``, each written under a temporary name and renamed
    (a reader never maps half a table)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(arrays):
        tmp = folder / f".{prefix}{name}.npy.tmp"
        with tmp.open("wb") as f:
            np.save(f, np.ascontiguousarray(arrays[name]))
        os.replace(tmp, folder / f"{prefix}{name}.npy")


def load_tables(names: list[str], folder: Path, prefix: str = "", what: str = "tables") -> dict[str, Array]:
    """Read-only views (``map_npy``) of the tables ``save_tables`` wrote: processes that map the same files
    share the page cache's one copy. A missing folder is named, with ``what`` it should have held."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: no folder {folder}")
    return {name: map_npy(folder / f"{prefix}{name}.npy") for name in names}

"""Mapped .npy tables and warming the page cache (runtime.pages)."""

import numpy as np
import pytest

from runtime.pages import is_mapped, map_npy, warm

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float16).reshape(3, 4),
        np.arange(10, dtype=np.int64),
        np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        np.zeros((0, 4), np.float32),
        np.float32(3.5),
    ],
)
def test_a_mapped_table_equals_the_saved_one_and_is_read_only(tmp_path, array):
    np.save(tmp_path / "t.npy", array)
    got = map_npy(tmp_path / "t.npy")
    np.testing.assert_array_equal(got, array)
    assert not is_mapped(np.array(got))  # a copy is not
    assert got.dtype == array.dtype and got.shape == array.shape
    if array.size:
        assert is_mapped(got) and not got.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            np.copyto(got, 1)


def test_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array(["a", None], object), allow_pickle=True)
    with pytest.raises(ValueError, match="object array"):
        map_npy(tmp_path / "o.npy")


def test_warm_reads_files_and_can_be_turned_off(tmp_path, monkeypatch):
    (tmp_path / "empty").write_bytes(b"")
    np.save(tmp_path / "t.npy", np.ones(100_000, np.float32))
    warm(tmp_path / "t.npy", tmp_path / "empty")  # reads them; an empty file is skipped
    monkeypatch.setenv("SHOPRANK_WARM", "0")
    warm(tmp_path / "missing.npy")  # off: not even opened
    monkeypatch.delenv("SHOPRANK_WARM")
    with pytest.raises(FileNotFoundError):
        warm(tmp_path / "missing.npy")

"""Float16 table rows read as float32 (runtime/half.py): the same values as numpy's cast."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.half import rows_float32, to_float32


@pytest.mark.unit
def test_every_float16_converts_to_numpys_float32():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(-1, 64)
    got, want = to_float32(every), every.astype(np.float32)
    assert got.dtype == np.float32 and got.shape == every.shape
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)  # a NaN stays a NaN (its payload may be quietened)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))  # the rest: bit for bit


@pytest.mark.unit
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (0, 8)])
def test_any_shape_keeps_its_shape(shape):
    values = np.random.default_rng(0).normal(size=shape).astype(np.float16)
    got = to_float32(values)
    assert got.shape == shape and got.dtype == np.float32
    assert np.array_equal(got, values.astype(np.float32))


@pytest.mark.unit
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_rows_are_the_tables_rows_as_float32(dtype):
    table = np.random.default_rng(1).normal(size=(50, 16)).astype(dtype)
    table[-1] = 0  # the unknown item's row, asked for as -1
    rows = np.array([3, 0, 49, -1, 3, 17], np.int64)
    got = rows_float32(table, rows)
    assert got.dtype == np.float32 and got.shape == (6, 16)
    assert np.array_equal(got, table[rows].astype(np.float32))
    assert not got[3].any()
    got[0] = 1.0  # the caller's own array: writing it leaves the table alone
    assert not np.array_equal(table[3].astype(np.float32), got[0])
    assert rows_float32(table, np.zeros(0, np.int64)).shape == (0, 16)


@pytest.mark.unit
def test_a_row_out_of_the_table_is_an_error():
    with pytest.raises(IndexError):
        rows_float32(np.zeros((4, 2), np.float16), np.array([4]))

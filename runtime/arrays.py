"""Array types for the type checker: numpy's ``NDArray`` with the dtypes the serving code uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]  # any dtype: a request tensor before it is checked
Int64s = npt.NDArray[np.int64]  # ids and table rows
Floats = npt.NDArray[np.float32]  # features, scores, embeddings

"""TensorRT optimisation profiles from the model configs: the engine accepts exactly what Triton may send.

* min: 1 row (a single request) and, for the encoder, the shortest query bucket (4 tokens);
* max: the config's ``max_batch_size`` and, for the encoder, ``QUERY_TOKENS`` (32);
* opt: the shape the engine is tuned for: a typical dynamic batch (8 queries of 8 tokens; 256
  candidate rows, a couple of 100-candidate requests).
"""

from __future__ import annotations

from dataclasses import dataclass

from builders.repository.triton_config import ModelSpec
from runtime import contract as c

ENCODER_OPT = (8, 8)  # (queries, tokens)
RANKER_OPT_ROWS = 256


@dataclass(frozen=True)
class Profile:
    """min/opt/max shape of every input, batch axis included."""

    min: dict[str, tuple[int, ...]]
    opt: dict[str, tuple[int, ...]]
    max: dict[str, tuple[int, ...]]

    def __post_init__(self):
        for name in self.opt:
            lo, mid, hi = self.min[name], self.opt[name], self.max[name]
            if not (len(lo) == len(mid) == len(hi)) or any(
                not a <= b <= m for a, b, m in zip(lo, mid, hi, strict=True)
            ):
                raise ValueError(f"profile for {name}: need min <= opt <= max per axis, got {lo} {mid} {hi}")


def _shape(spec: ModelSpec, tensor_dims: tuple[int, ...], batch: int, variable: int) -> tuple[int, ...]:
    return (batch,) + tuple(variable if d == -1 else d for d in tensor_dims)


def for_spec(spec: ModelSpec) -> Profile:
    """The profile of the encoder or the ranker spec (``builders.repository.model_specs``)."""
    if spec.max_batch_size <= 0:
        raise ValueError(f"{spec.name}: a TensorRT profile needs a batching model (max_batch_size > 0)")
    if spec.name == c.TEXT_ENCODER:
        lo, (opt_b, opt_len), hi = (1, c.QUERY_PAD_MULTIPLE), ENCODER_OPT, (spec.max_batch_size, c.QUERY_TOKENS)
    elif spec.name == c.RANKER:
        lo, (opt_b, opt_len), hi = (1, 0), (min(RANKER_OPT_ROWS, spec.max_batch_size), 0), (spec.max_batch_size, 0)
    else:
        raise ValueError(f"no TensorRT profile for {spec.name!r}: only {c.TEXT_ENCODER} and {c.RANKER} become engines")
    make = lambda b, v: {t.name: _shape(spec, t.dims, b, v) for t in spec.inputs}  # noqa: E731
    return Profile(make(lo[0], lo[1]), make(opt_b, opt_len), make(hi[0], hi[1]))

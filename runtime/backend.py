"""Request loop shared by the Python-backend models, with errors mapped to status codes in one place.

``triton_python_backend_utils`` is passed in by each ``model.py`` (only they import it), so this module
imports nothing from Triton. ``InvalidInput`` -> INVALID_ARGUMENT with the field-naming message; any
other exception -> INTERNAL for that request alone: the model keeps serving the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runtime.arrays import Array
from runtime.errors import InvalidInput


def serve(
    pb_utils: Any,
    requests: Sequence[Any],
    inputs: Sequence[str],
    handler: Callable[..., dict[str, Array]],
    logger: Any = None,
) -> list[Any]:
    """One response per request, in order. ``pb_utils``, the requests, the responses and the logger are
    the Python backend's own objects, untyped (``triton_python_backend_utils`` exists only inside Triton)."""
    responses = []
    for request in requests:
        try:
            arrays = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in inputs}
            outputs = handler(*(arrays[name] for name in inputs))
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
                )
            )
        except InvalidInput as err:
            responses.append(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG))
            )
        except Exception as err:
            if logger is not None:
                logger.log_error(f"internal error: {type(err).__name__}: {err}")
            responses.append(
                pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(
                        f"internal error: {type(err).__name__}: {err}", pb_utils.TritonError.INTERNAL
                    )
                )
            )
    return responses

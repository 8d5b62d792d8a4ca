"""One exception tree for every failure, and the one place where gRPC statuses are mapped to it."""

from __future__ import annotations


class RankingError(Exception):
    """Base of every error the SDK raises. ``status`` is the gRPC status name when the server answered
    (``"INVALID_ARGUMENT"``...), ``None`` for errors found before anything was sent."""

    retryable = False

    def __init__(self, message: str, status: str | None = None, endpoint: str | None = None):
        self.message = message
        self.status = status
        self.endpoint = endpoint
        where = f" [{endpoint}]" if endpoint else ""
        super().__init__(f"{message}{where}")


class InvalidRequest(RankingError):
    """The request is wrong (caught client-side, or INVALID_ARGUMENT from the server).
    ``field`` names the request field when known (``"query"``, ``"candidates"``...)."""

    def __init__(self, message: str, field: str | None = None, status: str | None = None, endpoint: str | None = None):
        self.field = field
        super().__init__(message, status, endpoint)


class Unavailable(RankingError):
    """No server answered (down, not ready, connection refused). Retried on another endpoint."""

    retryable = True


class Overloaded(RankingError):
    """The server shed the request (a model's queue is full). Retried with backoff."""

    retryable = True


class DeadlineExceeded(RankingError):
    """The call's deadline passed before an answer (including any retries)."""


class ServerError(RankingError):
    """The server failed while handling a valid request (INTERNAL, UNKNOWN and the rest)."""


class ContractMismatch(RankingError):
    """The served model's inputs/outputs differ from what this SDK sends and expects."""


# Triton's message when a model's queue is full (server/src/... "exceeds maximum queue size").
_OVERLOAD_MARKERS = ("exceeds maximum queue size", "resource_exhausted")
# The server's INVALID_ARGUMENT messages start with the tensor name; map it to the SDK's field name.
_FIELD_OF_TENSOR = {"USER_ID": "user_id", "QUERY": "query", "ITEM_IDS": "candidates", "TOP_K": "k"}


def _field_from_message(message: str) -> str | None:
    for tensor, field in _FIELD_OF_TENSOR.items():
        if f"{tensor}:" in message or f"'{tensor}'" in message:
            return field
    return None


def from_triton(exc: Exception, endpoint: str | None = None) -> RankingError:
    """Convert a tritonclient ``InferenceServerException`` (or any error) into the SDK's tree."""
    status_fn = getattr(exc, "status", None)
    raw_status = status_fn() if callable(status_fn) else None
    status = str(raw_status).replace("StatusCode.", "") if raw_status else None
    message_fn = getattr(exc, "message", None)
    message = message_fn() if callable(message_fn) else str(exc)
    message = message or str(exc)
    lowered = message.lower()
    if status == "INVALID_ARGUMENT":
        return InvalidRequest(message, _field_from_message(message), status, endpoint)
    if status == "RESOURCE_EXHAUSTED" or any(m in lowered for m in _OVERLOAD_MARKERS):
        return Overloaded(message, status, endpoint)
    if status == "UNAVAILABLE":
        return Unavailable(message, status, endpoint)
    if status == "DEADLINE_EXCEEDED":
        return DeadlineExceeded(message, status, endpoint)
    return ServerError(message, status, endpoint)

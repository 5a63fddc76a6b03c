"""One small tree of error types. Each knows its gRPC status code and its HTTP status.

Foreign exceptions (purerpc, h2, hypercorn) are translated into these once, at the edge.
"""

from __future__ import annotations

import enum


class GrpcCode(enum.IntEnum):
    """gRPC status codes (the wire numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class FodcError(Exception):
    """Base of every error fodcproxy raises on purpose. The message is for a person."""

    grpc_code: GrpcCode = GrpcCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(FodcError):
    """Bad input: a malformed registration, a bad query parameter."""

    grpc_code = GrpcCode.INVALID_ARGUMENT
    http_status = 400


class LimitExceeded(FodcError):
    """A configured limit was hit (max agents, message size, ...)."""

    grpc_code = GrpcCode.RESOURCE_EXHAUSTED
    http_status = 413


class NotRegistered(FodcError):
    """A stream names an agent that is not registered."""

    grpc_code = GrpcCode.FAILED_PRECONDITION
    http_status = 404


class Unauthenticated(FodcError):
    grpc_code = GrpcCode.UNAUTHENTICATED
    http_status = 401


class PermissionDenied(FodcError):
    """A stream speaks for an agent that another connection registered."""

    grpc_code = GrpcCode.PERMISSION_DENIED
    http_status = 403


class DeadlineExceeded(FodcError):
    """A peer did not send what it must within a deadline (e.g. the first RegisterAgentRequest)."""

    grpc_code = GrpcCode.DEADLINE_EXCEEDED
    http_status = 504


class IdentityChanged(FodcError):
    """A heartbeat carried another identity than its registration."""

    grpc_code = GrpcCode.FAILED_PRECONDITION
    http_status = 409


class TakenOver(FodcError):
    """A newer connection registered the same identity."""

    grpc_code = GrpcCode.ABORTED
    http_status = 409


class Replaced(FodcError):
    """A newer call of the same kind, on the agent's own connection, replaced this one."""

    grpc_code = GrpcCode.ABORTED
    http_status = 409


class Goodbye(FodcError):
    """Not a failure: the agent said goodbye, so its other calls end with status OK."""

    grpc_code = GrpcCode.OK
    http_status = 200


class ShuttingDown(FodcError):
    grpc_code = GrpcCode.UNAVAILABLE
    http_status = 503


class ConfigError(FodcError):
    """A bad flag or setting. `flag` names it."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag

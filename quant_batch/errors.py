"""One exception tree for quant-batch.

    QuantError
    ├── ConfigError            a setting is missing or wrong (names the key / variable)
    ├── InputError             a source file or manifest row is bad (names file and line)
    ├── LockError              another run holds the output folder
    ├── StorageError           a bucket or folder could not be read, listed or written (names
    │   │                      the URI, never a credential)
    │   └── ObjectNotFound     the key does not exist
    └── ApiError               the API answered with an error or did not answer
        ├── ServiceUnreachable no answer at all from the base URL (refused, DNS): stops the run
        ├── RequestRejected    terminal 4xx: never retried
        │   ├── AuthError          401 / 403
        │   ├── PayloadTooLarge    413
        │   └── ContentBlocked     the content filter refused a prompt or image
        └── TransientError     worth retrying with backoff
            ├── RateLimited        429 (carries ``retry_after`` seconds if the server sent one)
            ├── ServerError        5xx
            ├── BadResponse        a 2xx whose body is unusable (not JSON, wrong shape, not an image)
            ├── ConnectionDropped  the connection failed or was cut
            └── Timeout            no answer within the read timeout

The spend cap is not an error: a run that reaches it stops sending, ends ``partial`` and the
next run goes on (see ``pricing.Budget``).

Messages never contain the API token: the client builds them from status, server message and
endpoint name only.
"""

from __future__ import annotations

from typing import Any


class QuantError(Exception):
    """Base class of every error quant-batch raises on purpose."""


class ConfigError(QuantError):
    """A configuration value is missing or invalid; the message names it."""


class InputError(QuantError):
    """A source document or manifest row cannot be used."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        self.reason = message
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")


class LockError(QuantError):
    """Another run is writing to the same output folder."""


class StorageError(QuantError):
    """Reading, listing or writing an output or source location failed.

    ``uri`` is the location without credentials; ``operation`` is what was being done
    ("read", "list", "commit", ...). The message is built from those and the storage service's
    error code, never from a credential.
    """

    def __init__(self, message: str, *, uri: str | None = None, operation: str | None = None):
        self.uri = uri
        self.operation = operation
        super().__init__(message)


class ObjectNotFound(StorageError):
    """The key (object or file) does not exist."""


class ApiError(QuantError):
    """The API returned an error status or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str | None = None,
        server_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.endpoint = endpoint
        self.server_message = server_message
        self.request_id = request_id
        super().__init__(message)


class ServiceUnreachable(ApiError):
    """The base URL never answered (connection refused, unknown host, TLS failure).

    Not a per-record failure: nothing the run sends can succeed, so a run stops at once and the
    unsent work stays pending for the next run instead of becoming dead letters.
    """


class RequestRejected(ApiError):
    """A 4xx answer: the request itself is wrong and resending it will not help."""

    def __init__(self, message: str, *, index: int | None = None, **kw: Any):
        self.index = index
        super().__init__(message, **kw)


class AuthError(RequestRejected):
    """401 (no token) or 403 (token not accepted)."""


class PayloadTooLarge(RequestRejected):
    """413: the request body is over the service's size limit."""


class ContentBlocked(RequestRejected):
    """The service's content filter refused the input or every output."""


class TransientError(ApiError):
    """An error that may go away when the request is sent again later."""


class RateLimited(TransientError):
    """429: the account is over its request or token rate."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(TransientError):
    """5xx from the service."""


class BadResponse(TransientError):
    """A success status whose body cannot be used: not JSON, the wrong shape, or image bytes
    that are not a PNG/JPEG. The service sent garbage, so sending again may well work."""


class ConnectionDropped(TransientError):
    """The TCP connection failed, was reset or closed before a full answer."""


class Timeout(TransientError):
    """The service did not answer within the configured timeout."""


RUN_STOPPERS = (AuthError, ServiceUnreachable)
"""Failures that no further call of the run can avoid: the run stops sending at once."""


def stop_reason(exc: ApiError) -> str:
    """One line that says why a run stopped and what to do (never the token or the organisation)."""
    if isinstance(exc, AuthError):
        status = f"HTTP {exc.status}" if exc.status else "authentication"
        return (
            f"the API refused the credentials ({status}); check QUANT_API_KEY / QUANT_ORGANIZATION "
            "or the Secret block named in api.secret_block"
        )
    return str(exc)

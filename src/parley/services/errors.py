"""Every error a service can raise, in one tree. Each carries the wire ``code`` of the
IMKIT contract; each edge (HTTP, socket) maps codes to its own status table.

ParleyError
├── AuthError                    credentials
│   ├── MissingClientKey         MISSING_CLIENT_KEY
│   ├── InvalidClientKey         INVALID_CLIENT_KEY   malformed, forged, unknown, revoked
│   ├── ClientKeyMismatch        CLIENT_KEY_MISMATCH  key of another app's Host, or Origin
│   ├── MissingApiKey            MISSING_API_KEY
│   ├── InvalidApiKey            INVALID_API_KEY
│   ├── InvalidToken             INVALID_TOKEN        missing, unknown, expired, revoked
│   └── InsufficientPermissions  INSUFFICIENT_PERMISSIONS
├── RateLimitExceeded            RATE_LIMIT_EXCEEDED  (retry_after seconds)
├── InvalidRequest               INVALID_REQUEST      (and MISSING_PARAMETER, INVALID_QUERY, …)
├── NotFound                     CLIENT_NOT_FOUND, TOKEN_NOT_FOUND, APP_NOT_FOUND, …
├── Conflict                     TOKEN_CONFLICT, …
├── TooLarge                     RESULT_TOO_LARGE, PAYLOAD_TOO_LARGE
└── ServiceUnavailable           SERVICE_UNAVAILABLE  (a dependency is down; retry)
"""

from __future__ import annotations

from typing import Any


class ParleyError(Exception):
    code = "INTERNAL_ERROR"
    default_message = "Internal error"

    def __init__(self, message: str | None = None, *, code: str | None = None, **extra: Any):
        self.message = message or self.default_message
        if code:
            self.code = code
        self.extra = extra
        super().__init__(self.message)


class AuthError(ParleyError):
    pass


class MissingClientKey(AuthError):
    code = "MISSING_CLIENT_KEY"
    default_message = "Client key is required"


class InvalidClientKey(AuthError):
    code = "INVALID_CLIENT_KEY"
    default_message = "The provided client key is invalid or expired"


class ClientKeyMismatch(AuthError):
    code = "CLIENT_KEY_MISMATCH"
    default_message = "Client key does not match the specified domain"


class MissingApiKey(AuthError):
    code = "MISSING_API_KEY"
    default_message = "API key is required"


class InvalidApiKey(AuthError):
    code = "INVALID_API_KEY"
    default_message = "The provided API key is invalid"


class InvalidToken(AuthError):
    code = "INVALID_TOKEN"
    default_message = "The user token is missing, invalid, expired or revoked"


class InsufficientPermissions(AuthError):
    code = "INSUFFICIENT_PERMISSIONS"
    default_message = "This credential may not perform this operation"


class RateLimitExceeded(ParleyError):
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Too many requests"

    def __init__(self, retry_after: int):
        super().__init__(f"Rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class InvalidRequest(ParleyError):
    code = "INVALID_REQUEST"
    default_message = "The request is invalid"


class NotFound(ParleyError):
    code = "NOT_FOUND"
    default_message = "Not found"


class Conflict(ParleyError):
    code = "CONFLICT"
    default_message = "Conflict"


class TooLarge(ParleyError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "Too large"


class ServiceUnavailable(ParleyError):
    code = "SERVICE_UNAVAILABLE"
    default_message = "A required service is unavailable; retry later"

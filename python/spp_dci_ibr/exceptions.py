"""The exception tree of ``spp_dci_ibr``.

Every error the package raises for a protocol, transport or key problem derives from
:class:`DCIError`. Messages are specific and never carry secrets, tokens or key material.
Some classes also derive from a builtin (``ValueError``, ``TypeError``, ``TimeoutError``) so
code written against the builtin keeps working.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CanonicalJSONError",
    "CapacityError",
    "ConfigError",
    "DCIError",
    "DCITimeoutError",
    "HTTPStatusError",
    "KeyFormatError",
    "ProtocolError",
    "RegistryError",
    "SignatureError",
    "TransportError",
    "UndecidedError",
]


class DCIError(Exception):
    """Root of every error raised by ``spp_dci_ibr``."""


class ConfigError(DCIError, ValueError):
    """A configuration value is wrong or missing (URL, credentials, paths, …)."""


class KeyFormatError(DCIError, ValueError):
    """A key (PEM, JWK, JWKS, seed) cannot be read or is not acceptable."""


class CanonicalJSONError(DCIError, TypeError):
    """A value cannot be written as canonical JSON (non-string key, unsupported type, too deep)."""


class SignatureError(DCIError):
    """A signature could not be produced, or a signed answer failed verification."""


class CapacityError(DCIError):
    """A bounded store (the replay guard) is full of live entries and refuses new ones."""


class TransportError(DCIError):
    """The request did not get an HTTP answer (connection refused or reset, TLS, DNS)."""


class DCITimeoutError(TransportError, TimeoutError):
    """The request timed out (connect or read)."""


class AuthError(DCIError):
    """Authentication failed: token endpoint refused the credentials, or 401/403 after renewal.

    ``status`` is the HTTP status when there was one; ``code`` the error code the body carried.
    """

    status: int | None
    code: str | None

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HTTPStatusError(DCIError):
    """The registry answered with an HTTP error status.

    ``status`` is the HTTP status; ``code`` the DCI/``errors``/``detail`` code when the body had one.
    """

    status: int
    code: str | None

    def __init__(self, message: str, status: int = 0, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryError(DCIError):
    """The registry refused the request in-protocol (ACK ``NACK``/``ERR``, item status ``rjct``).

    ``code`` is the registry's reason code when it gave one.
    """

    code: str | None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(DCIError):
    """The answer is not a DCI message this client can read (not JSON, wrong shape, too large),
    or is not bound to the request: another action, receiver_id, transaction_id or
    reference_id, or a message_id already read (a replayed answer)."""


class UndecidedError(DCIError):
    """A readable answer that does not decide the question: a search item that is pending,
    missing, answered twice or of an unreadable shape; an enrolled status other than exactly
    ``yes``/``no``. Never to be read as "nothing found" or "not enrolled"."""

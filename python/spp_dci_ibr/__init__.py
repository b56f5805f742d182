"""DCI client for the Integrated Beneficiary Registry (IBR).

The protocol core (canonical JSON, signatures, keys, HTTP client, duplication checks, sandbox) is
native Rust; this package re-exports it with docstrings and type stubs. See the README for the
calls, what each raises and whether it releases the GIL.
"""

from __future__ import annotations

from . import exceptions
from ._native import (
    JWKS,
    BeneficiaryInfo,
    CallbackRefusal,
    CallbackVerifier,
    CheckIterator,
    DCIClient,
    DuplicationResult,
    IBRService,
    IdentifierOutcome,
    RemoteJWKS,
    ReplayGuard,
    SignatureCheck,
    SigningKey,
    VerifiedCallback,
    __version__,
    canonical_json,
    check_signature,
    doctor,
    explain_signature,
    jwk_to_pem,
    pem_to_jwk,
    sign_envelope,
    verify_signature,
)

__all__ = [
    "JWKS",
    "BeneficiaryInfo",
    "CallbackRefusal",
    "CallbackVerifier",
    "CheckIterator",
    "DCIClient",
    "DuplicationResult",
    "IBRService",
    "IdentifierOutcome",
    "RemoteJWKS",
    "ReplayGuard",
    "SignatureCheck",
    "SigningKey",
    "VerifiedCallback",
    "__version__",
    "canonical_json",
    "check_signature",
    "doctor",
    "exceptions",
    "explain_signature",
    "jwk_to_pem",
    "pem_to_jwk",
    "sign_envelope",
    "verify_signature",
]

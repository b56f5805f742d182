"""Type stubs of the native core (``spp_dci_ibr._native``)."""

from typing import Any, final

__version__: str

JSON = Any
PublicKey = str | bytes | dict[str, Any] | JWKS

def canonical_json(value: JSON) -> str:
    """Exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"))``.

    Raises ``CanonicalJSONError`` (a ``TypeError``) for non-string keys, unsupported types or
    nesting deeper than 512 levels.
    """

def sign_envelope(
    header: dict[str, Any],
    message: dict[str, Any],
    private_key: str | bytes | SigningKey,
    *,
    sender_id: str,
    key_id: str,
    algorithm: str | None = None,
    created: int | None = None,
    lifetime: int = 300,
) -> str:
    """Signs ``{"header": header, "message": message}``; returns the ``signature`` field value.

    ``private_key`` is a ``SigningKey``, a PEM, or 32 raw bytes (an Ed25519 seed). ``algorithm``
    defaults from the key. Raises ``KeyFormatError`` for an unreadable key. Releases the GIL while
    signing.
    """

def check_signature(
    signature: str,
    header: dict[str, Any],
    message: dict[str, Any],
    public_key: PublicKey,
    *,
    now: int | None = None,
    max_skew: int = 60,
    max_lifetime: int = 3600,
) -> SignatureCheck:
    """Checks a ``signature`` field; the outcome is named (see ``SignatureCheck``).

    Raises ``KeyFormatError`` when ``public_key`` cannot be read.
    """

def verify_signature(
    signature: str,
    header: dict[str, Any],
    message: dict[str, Any],
    public_key: PublicKey,
    *,
    now: int | None = None,
    max_skew: int = 60,
    max_lifetime: int = 3600,
) -> bool:
    """True when valid. Signature problems give False; an unreadable key raises ``KeyFormatError``."""

def jwk_to_pem(jwk: dict[str, Any] | str) -> str:
    """A public Ed25519 or RSA JWK as SubjectPublicKeyInfo PEM; ``KeyFormatError`` otherwise."""

def pem_to_jwk(pem: str | bytes, kid: str | None = None) -> dict[str, Any]:
    """A public key PEM as the JWK to publish (``use`` sig, ``alg`` EdDSA or RS256, ``kid``)."""

@final
class SigningKey:
    """A private key: Ed25519 or RSA. Its repr shows no key material."""

    @staticmethod
    def generate(algorithm: str = "ed25519", bits: int = 2048) -> SigningKey:
        """A new random key, ``"ed25519"`` or ``"rs256"`` (``bits`` 2048 to 4096)."""
    @staticmethod
    def from_pem(pem: str | bytes) -> SigningKey:
        """Loads PKCS#8 ``PRIVATE KEY`` (Ed25519 or RSA) or PKCS#1 ``RSA PRIVATE KEY``."""
    @staticmethod
    def from_seed(seed: bytes) -> SigningKey:
        """An Ed25519 key from its raw 32-byte seed."""
    @property
    def algorithm(self) -> str:
        """``"ed25519"`` or ``"rs256"``."""
    def public_pem(self) -> str:
        """SubjectPublicKeyInfo PEM of the public key."""
    def private_pem(self) -> str:
        """PKCS#8 PEM of the private key. Store it as a secret."""
    def kid(self, sender_id: str, key_id: str) -> str:
        """``<sender_id>|<key_id>|<alg>``."""
    def public_jwk(self, sender_id: str, key_id: str) -> dict[str, Any]:
        """The public JWK to publish, with its kid."""

@final
class JWKS:
    """A parsed ``{"keys": [...]}``; keys are selected by their full kid."""

    @staticmethod
    def from_json(obj: str | bytes | dict[str, Any]) -> JWKS:
        """Parses a JWKS; unusable keys are skipped (see ``skipped``)."""
    @property
    def kids(self) -> list[str | None]:
        """Kids of the usable keys."""
    @property
    def skipped(self) -> list[tuple[str | None, str]]:
        """``(kid, reason)`` of each skipped key."""
    def get(self, kid: str) -> dict[str, Any] | None:
        """The public JWK with exactly this kid."""
    def to_dict(self) -> dict[str, Any]:
        """The usable keys as a JWKS dict."""
    def __len__(self) -> int: ...

@final
class SignatureCheck:
    """Outcome of ``check_signature``; true only when valid."""

    @property
    def outcome(self) -> str:
        """valid | invalid | expired | not_yet_valid | lifetime_too_long | malformed | unknown_key"""
    @property
    def kid(self) -> str | None: ...
    @property
    def algorithm(self) -> str | None: ...
    @property
    def created(self) -> int | None: ...
    @property
    def expires(self) -> int | None: ...
    @property
    def detail(self) -> str | None:
        """Why the signature field is malformed, when it is."""
    def __bool__(self) -> bool: ...

@final
class ReplayGuard:
    """Remembers ``(sender_id, message_id)`` until expiry; bounded; thread-safe."""

    def __init__(self, max_entries: int = 100_000) -> None: ...
    def check(self, sender_id: str, message_id: str, expires: int, now: int | None = None) -> bool:
        """True the first time, False for a replay; ``CapacityError`` when full."""
    def __len__(self) -> int: ...

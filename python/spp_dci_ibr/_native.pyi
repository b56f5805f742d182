"""Type stubs of the native core (``spp_dci_ibr._native``)."""

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, final

from typing_extensions import Self, disjoint_base

__version__: str

_JSON = Any
# A public key: PEM or JWK/JWKS JSON text (str or bytes), a JWK or JWKS dict, or a JWKS. A private
# key anywhere in it raises KeyFormatError.
_PublicKey = str | bytes | dict[str, Any] | "JWKS"

def canonical_json(value: _JSON) -> str:
    """Exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"))``.

    Objects are read as ``json.dumps`` reads them: a ``dict`` subclass through its ``items()``,
    a ``list``/``tuple`` subclass through iteration, ``str``/``int``/``float`` subclasses by
    value (never their ``__str__``/``__repr__``). Raises ``CanonicalJSONError`` (a
    ``TypeError``) for non-string keys, a key twice in one object (an ``items()`` override),
    unsupported types or nesting deeper than 512 levels.
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
    public_key: _PublicKey,
    *,
    now: int | None = None,
    max_skew: int = 60,
    max_lifetime: int = 3600,
) -> SignatureCheck:
    """Checks a ``signature`` field; the outcome is named (see ``SignatureCheck``).

    ``public_key`` is a PEM (one public key block) or JWK/JWKS JSON text, a JWK or JWKS dict, or a
    ``JWKS``. Raises ``KeyFormatError`` when it cannot be read or holds a private key anywhere.
    """

def verify_signature(
    signature: str,
    header: dict[str, Any],
    message: dict[str, Any],
    public_key: _PublicKey,
    *,
    now: int | None = None,
    max_skew: int = 60,
    max_lifetime: int = 3600,
) -> bool:
    """True when valid. Signature problems give False; an unreadable key raises ``KeyFormatError``."""

def explain_signature(
    signature: str,
    header: dict[str, Any],
    message: dict[str, Any],
    public_key: _PublicKey,
    *,
    now: int | None = None,
    max_skew: int = 60,
    max_lifetime: int = 3600,
) -> dict[str, Any]:
    """How the signature was checked (``verify --explain``): ``outcome`` and ``valid`` (as
    ``check_signature``), ``kid``, ``algorithm``, ``created``, ``expires``, ``canonical_length`` and
    ``canonical_sha256`` of the canonical bytes, ``signing_string``, ``available_kids``, ``key``
    (the key tried for the kid: ``kid``, ``algorithm``, ``chosen`` and each header ``forms`` tried
    with its ``digest`` and ``verified``), ``verified_form`` and ``reasons`` (why it is not valid)."""

def doctor(
    client: DCIClient,
    *,
    our_jwks_url: str | None = None,
    id_type: str | None = None,
    id_value: str | None = None,
) -> dict[str, Any]:
    """Runs every first-hour step against the registry ``client`` is configured for (one signed
    test search for ``id_type``/``id_value``, default ``UIN`` and a value nobody has) and returns
    the report: ``ok``, ``exit_code`` (0 all passed, 1 warnings, 3 failures), ``summary`` and
    ``steps`` (``id``, ``title``, ``status`` pass/warn/fail/skip, ``found``, ``fix``). Step ids:
    reachable, tls, token, registry_jwks, our_key (when ``our_jwks_url`` is given), clock_skew,
    search, answer_signature, answer_binding, answer_spec. Never contains a token or secret.
    Releases the GIL."""

def jwk_to_pem(jwk: dict[str, Any] | str) -> str:
    """A public Ed25519 or RSA JWK as SubjectPublicKeyInfo PEM; ``KeyFormatError`` otherwise
    (private members anywhere, duplicate members in JSON text, other key types)."""

def pem_to_jwk(pem: str | bytes, kid: str | None = None) -> dict[str, Any]:
    """A public key PEM as the JWK to publish (``use`` sig, ``alg`` EdDSA or RS256, ``kid``).

    The text must be one public key block; a private key anywhere in it raises
    ``KeyFormatError``.
    """

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
        """Parses a JWKS; unusable keys are skipped (see ``skipped``).

        Raises ``KeyFormatError`` for a document that is not a JWKS, has a member twice in one
        object, or holds a private key anywhere (the whole set is refused, not the entry).
        """
    @staticmethod
    def fetch(url: str, *, allow_http: bool = False, verify_tls: bool = True) -> JWKS:
        """GET a JWKS (https unless ``allow_http``; ≤ 1 MiB; 10 s; at most 3 redirects, each to
        the same scheme, host and port).

        Raises ``ConfigError`` for a refused URL, ``TransportError``/``DCITimeoutError``,
        ``HTTPStatusError`` (also for a redirect elsewhere), ``ProtocolError`` (too large) or
        ``KeyFormatError``. Releases the GIL.
        """
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

    def __new__(cls, max_entries: int = 100_000) -> ReplayGuard: ...
    def check(self, sender_id: str, message_id: str, expires: int, now: int | None = None) -> bool:
        """True the first time, False for a replay; ``CapacityError`` when full."""
    def __len__(self) -> int: ...

@final
class RemoteJWKS:
    """Keys published at a JWKS URL, for a callback key lookup to return.

    Fetched through the process-wide cache (kept an hour; refetched on an unknown kid at most
    once a minute per URL, failed fetches included; one fetch at a time), and only when no other
    key of the sender has the signature's kid. https only unless ``allow_http``; nothing is
    fetched when it is created. Raises ``ConfigError`` for a refused URL.
    """

    def __new__(
        cls, url: str, *, allow_http: bool = False, verify_tls: bool = True
    ) -> RemoteJWKS: ...
    @property
    def url(self) -> str: ...

_KeyMaterial = _PublicKey | RemoteJWKS

@final
class VerifiedCallback:
    """A callback that passed every check of ``CallbackVerifier.verify`` (not yet replay).

    ``header`` is the header as verified: as received, or in the normalised form that verified
    (``header_form``: ``as_received``, ``defaults_keep_nulls`` or ``defaults_drop_nulls``).
    """

    @property
    def action(self) -> str: ...
    @property
    def sender_id(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def kid(self) -> str: ...
    @property
    def expires(self) -> int:
        """The signature's expiry (Unix seconds): remember the message_id until then."""
    @property
    def header_form(self) -> str: ...
    @property
    def header(self) -> dict[str, Any]: ...
    @property
    def message(self) -> dict[str, Any]: ...
    @property
    def transaction_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def reference_ids(self) -> tuple[str, ...]: ...

@final
class CallbackRefusal:
    """A refused callback: HTTP ``status``, the spec's ``err.*`` ``code`` and a ``message``.

    ``outcome`` is the signature's for a 401 ``err.signature.invalid``; ``sender_id`` and
    ``message_id`` (cut to 128 characters) name the callback when its envelope could be read.
    """

    @property
    def status(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def sender_id(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...

@final
class CallbackVerifier:
    """Checks received callbacks (PROTOCOL §3, §8) with fixed limits.

    Raises ``ConfigError`` (a ``ValueError``) for a limit out of range (``max_depth`` 1 to 128).
    """

    ANY_ACTION_PATH: str
    """The path, below the receiver's prefix, of the route taking every callback action."""

    def __new__(
        cls,
        *,
        max_body_bytes: int = 1048576,
        max_depth: int = 64,
        max_skew: int = 60,
        max_lifetime: int = 3600,
    ) -> CallbackVerifier: ...
    @staticmethod
    def routes() -> list[tuple[str, str]]:
        """``(action, path)`` of the five callback routes, the path below the prefix."""
    @property
    def max_body_bytes(self) -> int: ...
    def too_large(self) -> CallbackRefusal:
        """The refusal of a body larger than ``max_body_bytes``."""
    def verify(
        self,
        body: bytes,
        content_type: str | None,
        key_lookup: Callable[[str, str | None], _KeyMaterial | Iterable[_KeyMaterial] | None],
        *,
        action: str | None = None,
        now: int | None = None,
    ) -> VerifiedCallback | CallbackRefusal:
        """Checks one callback body (see ``spp_dci_ibr.callbacks`` for the order of checks).

        ``action`` is the route's (None: any of the five, dispatched on ``header.action``);
        ``key_lookup`` is called at most once, only after every check needing no key. Raises
        what the key lookup raised, ``KeyFormatError`` when no candidate key can be read.
        Releases the GIL.
        """

@final
class DCIClient:
    """A DCI client for one registry (see the README for every option).

    Signs every request with a fresh message_id, sends it over one pooled keep-alive connection
    (created on first use, recreated after ``fork()``), and raises ``spp_dci_ibr.exceptions``
    errors. Every call releases the GIL.

    Answers carrying data (sync search, enrolled, sync txn status, enrollment updates) must be
    signed envelopes that verify against the registry's keys (``registry_keys`` or
    ``registry_jwks_url``); a bare or unsigned answer raises ``SignatureError``. Without registry
    keys those calls raise ``ConfigError`` before sending, unless ``accept_unverified_answers=True``
    (a registry that signs nothing) — every result then says ``verified`` False. ACKs of the
    async calls carry no data and are unsigned by design: they are read as they come.

    Each data answer is bound to its request, else ``ProtocolError``: ``header.action`` the one
    of the call (``on-search``; ``txn-on-status``; enrolled: ``on-enrolled`` or ``on-search``;
    enrollment updates: ``on-enrollment-updates`` or ``on-notify``), ``header.receiver_id`` our
    ``sender_id``, a header ``status``, ``message.transaction_id`` ours, every item's
    ``reference_id`` one we sent (an item without one only when one query was asked), and a
    ``message_id`` never read before in this process (remembered until its signature expires).
    Text a registry or token endpoint sends back never carries our secret or token into an
    error or result: echoes are masked.
    """

    def __new__(
        cls,
        *,
        base_url: str,
        sender_id: str,
        receiver_id: str | None = None,
        callback_uri: str | None = None,
        callback_base_url: str | None = None,
        null_sender_uri: bool = False,
        auth: str = "none",
        bearer_token: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        credentials_location: str = "body",
        signing_key: SigningKey | None = None,
        key_id: str | None = None,
        unsigned: bool = False,
        registry_keys: _PublicKey | None = None,
        registry_jwks_url: str | None = None,
        allow_insecure_jwks: bool = False,
        accept_unverified_answers: bool = False,
        paths: dict[str, str] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
        max_retries: int = 2,
        backoff: float = 0.2,
        max_response_bytes: int = 33554432,
    ) -> DCIClient: ...
    @property
    def base_url(self) -> str: ...
    @property
    def sender_id(self) -> str: ...
    @property
    def receiver_id(self) -> str: ...
    @property
    def callback_uri(self) -> str | None:
        """The one callback URL sent with every async call, when configured that way."""
    @property
    def callback_base_url(self) -> str | None:
        """The base of the callback routes: each async call sends ``<base>/<its route>``."""
    def path(self, name: str) -> str:
        """The path used for a call: search, sync_search, subscribe, unsubscribe, txn_status,
        sync_txn_status, enrolled, enrollment_updates."""
    def check_auth(self) -> None:
        """Fetches (or reuses) the OAuth2 token; raises ``AuthError``/``TransportError``."""
    def search(
        self,
        query_type: str,
        query: Any,
        *,
        reg_type: str = "ns:org:RegistryType:IBR",
        reg_record_type: str | None = None,
        page_size: int = 10,
        page_number: int = 1,
        transaction_id: str | None = None,
    ) -> dict[str, Any]:
        """Sync search; returns the answered item: ``reference_id``, ``status`` (``succ``),
        ``reason_code``, ``reason_message``, ``records``, ``transaction_id``, ``message_id``,
        ``verified``.

        ``records`` is empty only for the documented zero-records shape. A ``rjct`` item raises
        ``RegistryError``; an item that decides nothing (pending, missing, answered twice, any
        other shape) raises ``UndecidedError``."""
    def search_by_id(self, id_type: str, id_value: str, **kwargs: Any) -> dict[str, Any]:
        """``search("idtype-value", {"type": id_type, "value": id_value}, **kwargs)``."""
    def search_by_expression(self, expression: Any, **kwargs: Any) -> dict[str, Any]:
        """``search("expression", expression, **kwargs)``."""
    def search_by_predicate(self, predicates: Any, **kwargs: Any) -> dict[str, Any]:
        """``search("predicate", predicates, **kwargs)``."""
    def search_batch(
        self,
        queries: list[Any],
        *,
        reg_type: str = "ns:org:RegistryType:IBR",
        page_size: int = 10,
        transaction_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Many searches in one envelope, answers matched back by ``reference_id`` only; one item
        dict per query (keys as ``search``), status ``succ`` | ``rjct`` | ``pdng`` | ``missing``
        | ``undecided``. ``records`` is a list only for ``succ``, else None: an item the registry
        did not answer never reads as "nothing found". ``reason_message`` says why."""
    def search_async(
        self,
        query_type: str,
        query: Any,
        *,
        reg_type: str = "ns:org:RegistryType:IBR",
        reg_record_type: str | None = None,
        page_size: int = 10,
        page_number: int = 1,
        transaction_id: str | None = None,
    ) -> dict[str, Any]:
        """Async search; returns the ACK dict (``ack_status``, ``transaction_id``,
        ``correlation_id``, ``reference_ids``, ``message_id``, ``timestamp``)."""
    def search_async_batch(
        self,
        queries: list[Any],
        *,
        reg_type: str = "ns:org:RegistryType:IBR",
        page_size: int = 10,
        transaction_id: str | None = None,
    ) -> dict[str, Any]:
        """Many async searches in one envelope; returns the one ACK dict, whose
        ``reference_ids`` are in query order. The answers arrive at our ``on-search`` callback."""
    def subscribe(self, criteria: Any, *, transaction_id: str | None = None) -> dict[str, Any]:
        """Subscribes (one criteria dict or a list); returns the ACK dict."""
    def unsubscribe(
        self, subscription_codes: list[str], *, transaction_id: str | None = None
    ) -> dict[str, Any]:
        """Unsubscribes; returns the ACK dict."""
    def txn_status(
        self,
        transaction_id: str | None = None,
        *,
        reference_ids: list[str] | None = None,
        correlation_id: str | None = None,
        txn_type: str = "search",
        sync: bool = False,
    ) -> dict[str, Any]:
        """Transaction status: the ACK dict, or with ``sync=True`` the TxnStatusResponse message
        (plus ``verified``)."""
    def enrolled(
        self,
        id_type: str,
        id_value: str,
        *,
        programme_id: str | None = None,
        response_entity: str | None = None,
    ) -> dict[str, Any]:
        """``/registry/sync/enrolled``; returns the message (``enrolled_response`` list) plus
        ``verified``. ``IBRService.get_enrollment_status`` reads it strictly."""
    def enrollment_updates(self, beneficiaries: list[dict[str, Any]]) -> dict[str, Any]:
        """``/registry/sync/enrollment/updates``; returns the message dict (plus ``verified``)."""

_Identifiers = Iterable[tuple[str, str] | Any]

@final
class IdentifierOutcome:
    """One identifier's outcome: status ``records`` | ``no_records`` | ``failed`` | ``pending``."""

    @property
    def id_type(self) -> str: ...
    @property
    def id_value(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def record_count(self) -> int: ...
    @property
    def reference_id(self) -> str | None: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class BeneficiaryInfo:
    """A beneficiary record: identifier, name, programme enrolments, raw record."""

    @property
    def identifier(self) -> tuple[str, str] | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def programs(self) -> list[dict[str, Any]]:
        """One dict per enrolment: programme_id, programme_name, status, enrolment_date, benefits."""
    @property
    def is_enrolled(self) -> bool:
        """An Active or Suspended enrolment."""
    @property
    def raw(self) -> dict[str, Any]: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class DuplicationResult:
    """Result of a duplication check (PROTOCOL §7).

    ``state`` is ``"completed"`` or ``"failed"``; ``result`` is ``"no_match"``,
    ``"possible_match"`` or ``"confirmed_match"``, or None exactly when the check failed (see
    ``reasons``). An identifier that could not be checked never yields ``"no_match"``: only a
    verified answer bound to the request, with the documented zero-records shape, counts as
    "nothing found"; any other item shape leaves its identifier ``failed``.
    ``bool(result)`` is False for a failed check.
    """

    @property
    def key(self) -> Any: ...
    @property
    def state(self) -> str: ...
    @property
    def result(self) -> str | None: ...
    @property
    def is_duplicate(self) -> bool:
        """Confirmed or possible match; False for no match and for failed checks."""
    @property
    def matched_programs(self) -> list[str]: ...
    @property
    def reasons(self) -> list[str]: ...
    @property
    def outcomes(self) -> list[IdentifierOutcome]: ...
    @property
    def raw_responses(self) -> list[dict[str, Any]]: ...
    @property
    def transaction_id(self) -> str | None: ...
    @property
    def verified(self) -> bool:
        """Every answer it was read from was verified against the registry's keys; False when
        answers were read unverified (``accept_unverified_answers=True``, or ``parse_callback``
        without ``verified=True``)."""
    @property
    def beneficiaries(self) -> list[BeneficiaryInfo]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __bool__(self) -> bool: ...

@final
class CheckIterator(Iterator[DuplicationResult]):
    """The iterator returned by ``IBRService.check_many``."""

    def __iter__(self) -> CheckIterator: ...
    def __next__(self) -> DuplicationResult: ...

@final
class IBRService:
    """Duplication checks against an IBR through a ``DCIClient``; calls release the GIL."""

    def __new__(cls, client: DCIClient) -> IBRService: ...
    def check_duplication(self, identifiers: _Identifiers) -> DuplicationResult:
        """Checks one registrant. Registry and transport problems give a failed result, never an
        exception; wrong Python arguments raise ValueError."""
    def check_many(
        self,
        registrants: Iterable[Any],
        *,
        batch_size: int = 100,
        concurrency: int = 4,
        progress: Callable[[int, int], object] | None = None,
    ) -> CheckIterator:
        """Streams ``(key, identifiers)`` pairs (or ``{"key", "identifiers"}`` dicts, or bare
        identifier lists keyed by position); yields results in input order with ``.key`` set.
        ``progress(done, failed)`` is called after each window."""
    def search_beneficiary(self, id_type: str, id_value: str) -> list[BeneficiaryInfo]:
        """Records for one identifier (an empty list only for the documented zero-records
        answer); raises the client's errors, ``UndecidedError`` for an answer that decides
        nothing."""
    def get_enrollment_status(self, id_type: str, id_value: str) -> dict[str, Any]:
        """``{"enrolled": bool, "programs", "beneficiary_info", "verified"}`` via
        ``/registry/sync/enrolled`` when offered, search otherwise (and for detail).

        ``enrolled`` is decided only by ``enrolled_status`` exactly ``"yes"``/``"no"`` in every
        item (status ``succ``, agreeing), or by a search answer read as strictly as
        ``check_duplication``. Anything else — other spellings, booleans, objects, an empty or
        missing list, disagreeing or pending items — raises ``UndecidedError``: never reported
        as not enrolled."""
    @staticmethod
    def parse_callback(
        message: dict[str, Any],
        *,
        reference_ids: list[str] | None = None,
        identifiers: _Identifiers | None = None,
        transaction_id: str | None = None,
        earlier: list[dict[str, Any]] | None = None,
        verified: bool = False,
    ) -> DuplicationResult:
        """Classifies ``on-search`` callback messages (or a search answer message) with the
        strict reading and matching of a sync answer; one outcome per identifier, in the order
        of ``reference_ids``.

        - ``reference_ids`` / ``identifiers``: the request items, same order and length. Items
          are matched by ``reference_id`` only; an item without one is taken only when one
          identifier is asked. Several identifiers without ``reference_ids`` raise
          ``ValueError``. Without identifiers, outcomes are named by reference_id.
        - ``transaction_id``: when given, every message must carry it (else every identifier
          fails).
        - ``earlier``: the earlier callback messages of the same request, in arrival order
          (``message`` is the newest). A pending item is superseded by a later answer; any
          other second answer to a reference_id makes it undecided (never "last wins").
        - An identifier no message has answered yet is ``pending`` (the result is not complete
          and never ``no_match``); wait for more callbacks while any outcome is pending.
        - ``verified``: declare that every message came from a verified envelope (the callback
          router verifies); it becomes ``DuplicationResult.verified``.

        An item naming a reference_id not asked, or a message without a ``search_response``
        list, fails every identifier (the reason says why).
        """

@disjoint_base
class Sandbox:
    """The embedded IBR sandbox; ``spp_dci_ibr.sandbox.IBRSandbox`` is this class (documented
    there) with ``client()`` added."""

    def __new__(
        cls,
        *,
        synthetic: int = 100,
        seed: int = 0,
        records: Sequence[dict[str, Any]] | None = None,
        records_file: str | os.PathLike[str] | None = None,
        require_signatures: bool = True,
        require_auth: bool = True,
        faults: Mapping[Any, Any] | None = None,
        prefix: str = "",
        sender_id: str = "ibr.sandbox.local",
        token_lifetime: int = 3600,
        max_page_size: int = 100,
        bare_enrolled: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        error_style: str = "errors",
        max_batch_items: int = 5000,
        reject_replays: bool = True,
        allow_remote_callbacks: bool = False,
        signing_key: SigningKey | None = None,
        key_id: str = "sandbox-key-1",
        client_id: str | None = None,
        client_secret: str | None = None,
        strict: bool = True,
        one_callback_url: bool = False,
    ) -> Self: ...
    def start(self) -> Self:
        """Starts serving; releases the GIL. ``ConfigError`` when the port cannot be bound."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def stop(self) -> None:
        """Stops and joins the threads; releases the GIL."""
    @property
    def running(self) -> bool: ...
    @property
    def url(self) -> str: ...
    @property
    def token_url(self) -> str: ...
    @property
    def jwks_url(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def sender_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    def public_jwks(self) -> dict[str, Any]: ...
    def register_client_key(
        self, sender_id: str, key: str | bytes | dict[str, Any] | JWKS
    ) -> None: ...
    def records(self) -> list[dict[str, Any]]: ...
    def sample_identifiers(self, status: str = "active", n: int = 1) -> list[tuple[str, str]]: ...
    def stats(self) -> dict[str, Any]: ...
    def reset_stats(self) -> None: ...
    def set_faults(self, faults: Mapping[Any, Any] | None) -> None: ...
    def faults(self) -> dict[str, Any]: ...

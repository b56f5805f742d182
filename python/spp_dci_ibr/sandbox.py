"""The embedded IBR sandbox: a protocol-faithful registry inside your process.

:class:`IBRSandbox` runs a real HTTP/1.1 server on the loopback interface (a random free port
by default), written in Rust; its threads never touch Python. It speaks the registry side of the
DCI IBR API:

============================================  ================================================
route (under ``prefix``)                       answer
============================================  ================================================
``POST /oauth2/client/token``                  ``{"access_token", "token_type": "Bearer",
                                               "expires_in"}``; credentials in the form body,
                                               HTTP Basic or the query string; bad ones → 401
                                               ``{"error": "invalid_client"}``
``GET /.well-known/jwks.json``                 the sandbox's public key, kid
                                               ``<sender_id>|sandbox-key-1|ed25519``
``POST /registry/sync/search``                 signed ``on-search`` envelope, one
                                               ``search_response`` item per request item
                                               (``reference_id`` echoed; a bad query → that
                                               item ``rjct``)
``POST /registry/search``                      202 ACK, then a signed ``on-search`` callback
``POST /registry/subscribe`` / ``unsubscribe``  202 ACK, then ``on-subscribe`` / ``on-unsubscribe``
``POST /registry/txn/status``                  202 ACK, then ``txn-on-status``
``POST /registry/sync/txn/status``             signed ``txn-on-status`` envelope
``POST /registry/sync/enrolled``               ``enrolled_response[].enrolled_status`` yes/no
``POST /registry/sync/enrollment/updates``     applies the beneficiaries to the dataset
============================================  ================================================

Callbacks go to the request header's ``sender_uri``: when its path ends with a callback route
(``on-search``, ``on-subscribe``, ``on-unsubscribe``, ``notify`` or ``txn/on-status``) that route
is replaced by the wanted one (``…/registry/on-search`` → ``…/registry/txn/on-status``);
otherwise ``sender_uri`` is a base and the route is appended (``…/cb`` → ``…/cb/on-search``).
With ``one_callback_url=True`` every callback goes to ``sender_uri`` exactly as given instead, as
many registries do (the receiver dispatches on ``header.action``). Only loopback callback hosts
are called. A subscription follows the records its ``idtype-value``, ``expression`` or
``predicate`` filter matches: an enrollment update of one of them is sent to the subscriber as a
``notify`` callback (``reg_event_type`` ``enrollement`` for a new beneficiary,
``enrollement_status_change`` for an update, the spec's spelling), to the ``notify`` route of the
subscribe request's ``sender_uri``.

Strict mode (``strict=True``, the default) checks every ``/registry/*`` request against the IBR
spec's request schema of its route (spec/ibr_api_v1.0.0.yaml, with its documented defects read
leniently) and refuses one that does not conform with 400 and the spec's error code for the part
at fault: ``err.sender_uri.invalid``, ``err.sender_id.invalid``, ``err.receiver_id.invalid``,
``err.version.not_supported``, ``err.encryption.invalid`` for those header members,
``err.signature.invalid`` for a signature that is not a string, ``err.request.bad`` otherwise; the
message names the place and what is wrong there, with the spec's status reason code where it has
one (``rjct.message_ts.invalid``, ``rjct.action.invalid``, ``rjct.timestamp.invalid``,
``rjct.search_criteria.invalid``, ``rjct.pagination.invalid`` …). So every test that talks to the
sandbox checks the conformance of what it sends. ``strict=False`` lets non-conforming bodies
through, for tests that send them on purpose.

Every ``/registry/*`` call needs a bearer token (``require_auth``) and a valid signature by a key
registered with :meth:`IBRSandbox.register_client_key` (``require_signatures``); refusals are
401 ``err.request.unauthorized`` / ``err.signature.invalid`` / ``err.signature.missing`` /
``err.sender_id.invalid``, 400 ``err.request.bad`` (and the strict-mode codes above), 409 for a
replayed ``message_id``, 413 for a body over 1 MiB, in the spec's
``{"errors": [{"code", "message"}]}`` shape. An ACK omits ``error`` (the spec's ``Response``).

Records follow the spec's ``Beneficiary`` shape::

    {"@type": "Beneficiary", "assistance_unit": "1",
     "member": {"member_identifier": "UIN-00000042",
                "demographic_info": {
                    "person": {"identifier_type": "UIN", "identifier_value": "UIN-00000042",
                               "name": {"first_name": "Zoë", "surname": "Nguyễn"},
                               "sex": "F", "birth_date": "1987-03-14"},
                    "identifier": [{"identifier_type": "UIN", ...},
                                   {"identifier_type": "NID", ...}]},
                "registration_date": "2019-05-02",
                "programme_identifier": {   # or a list of these
                    "programme": {"programme_identifier": "PRG-CASH-01",
                                  "programme_name": "Cash Transfer Programme"},
                    "enrolment_status": "Active",   # or enrollment_status; or a code 1-4
                    "enrolment_date": "2021-02-03", "status_change_date": "",
                    "benefits": {"benefit_type": "Cash", "benefit_date": "2024-06-01",
                                 "benefit_value": "USD 50", "benefit_frequency": "Monthly"}}}}

A CSV dataset has a header row with the columns ``id_type, id_value, given_name, family_name,
programme_id, programme_name, enrolment_status, enrolment_date`` and one row per enrolment.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._native import JWKS, SigningKey
from ._native import Sandbox as _NativeSandbox

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["IBRSandbox"]

_STATUSES = ("active", "suspended", "graduated", "deceased", "unknown")


class IBRSandbox:
    """An in-process IBR registry for tests, demos and benchmarks.

    Use it as a context manager (``with IBRSandbox() as sb: ...``) or call :meth:`start` and
    :meth:`stop`. Starting and stopping release the GIL; the server never calls into Python.

    Dataset: ``records`` (a list of records), else ``records_file`` (``.csv``, or JSON: a list
    of records or ``{"reg_records": [...]}``), else ``synthetic`` beneficiaries generated from
    ``seed`` (non-ASCII names, several programmes, every enrolment status, both spellings of
    ``enrolment_status``, codes 1-4 in a share of records, UINs ``UIN-00000001`` …, some with an
    ``NID`` too).

    ``faults`` (also :meth:`set_faults`), all optional and deterministic from ``seed`` and the
    order of requests: ``{"seed": 0, "latency_ms": 0, "jitter_ms": 0,
    "error_rates": {500: 0.02, 503: 0.02, 429: 0.02}, "drop_rate": 0.0, "garbage_rate": 0.0,
    "stall_rate": 0.0, "stall_ms": 0,
    "bad_signature_rate": 0.0, "wrong_reference_rate": 0.0, "duplicate_callback_rate": 0.0,
    "callback_delay_ms": 0, "retry_after": None, "unsigned_rate": 0.0, "wrong_key_rate": 0.0,
    "bad_token_rate": 0.0, "refuse_tokens": False, "clock_skew_s": 0}``; a status may also be a
    top-level key (``{503: 0.1}``). Faults apply to ``/registry/*`` routes only, except
    ``refuse_tokens`` (the token endpoint refuses every client) and ``clock_skew_s`` (seconds
    added to the ``Date`` header, header timestamps and signature times of everything it sends).
    ``unsigned_rate`` sends answers with an empty signature, ``wrong_key_rate`` signs them with a
    key that is not in its JWKS, ``bad_token_rate`` refuses valid bearer tokens with 401 — each
    a finding of ``spp_dci_ibr.doctor``.

    ``token_lifetime`` is the ``expires_in`` of issued tokens (0 issues expired tokens);
    ``max_page_size`` caps ``page_size``; ``bare_enrolled`` answers ``sync/enrolled`` and
    ``sync/enrollment/updates`` with the bare message instead of a signed envelope.
    ``error_style`` picks the error body: ``"errors"`` (spec), ``"ack"`` (DCI ERR ack),
    ``"detail"`` (``{"detail": {"code", "message"}}``) or ``"detail_text"``. ``strict``
    refuses requests that do not conform to the spec (see the module documentation);
    ``one_callback_url`` posts every callback to the request's ``sender_uri`` as given.

    Raises ``ConfigError`` for a dataset or fault configuration that cannot be used (and, from
    :meth:`start`, for a port that cannot be bound); ``ValueError``/``TypeError`` for wrong
    argument types.
    """

    def __init__(
        self,
        *,
        synthetic: int = 100,
        seed: int = 0,
        records: list[dict[str, Any]] | None = None,
        records_file: str | None = None,
        require_signatures: bool = True,
        require_auth: bool = True,
        faults: Mapping[str | int, Any] | None = None,
        prefix: str = "",
        sender_id: str = "ibr.sandbox.local",
        token_lifetime: int = 3600,
        max_page_size: int = 100,
        bare_enrolled: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        error_style: str = "errors",
        max_batch_items: int = 5000,
        strict: bool = True,
        one_callback_url: bool = False,
    ) -> None:
        self._native = _NativeSandbox(
            synthetic=synthetic,
            seed=seed,
            records=list(records) if records is not None else None,
            records_file=str(records_file) if records_file is not None else None,
            require_signatures=require_signatures,
            require_auth=require_auth,
            faults=dict(faults) if faults is not None else None,
            prefix=prefix,
            sender_id=sender_id,
            token_lifetime=token_lifetime,
            max_page_size=max_page_size,
            bare_enrolled=bare_enrolled,
            host=host,
            port=port,
            error_style=error_style,
            max_batch_items=max_batch_items,
            strict=strict,
            one_callback_url=one_callback_url,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> IBRSandbox:
        """Starts serving (no-op when running) and returns ``self``. Releases the GIL."""
        self._native.start()
        return self

    def stop(self) -> None:
        """Stops accepting requests, closes every connection and joins the server threads
        (no-op when stopped).

        A client holding an idle keep-alive connection sees it closed at once (a connection
        error on its next request, not a timeout). Callbacks not yet sent are discarded.
        Releases the GIL.
        """
        self._native.stop()

    def __enter__(self) -> IBRSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._native.running

    # -- where it is ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, prefix included: ``http://127.0.0.1:PORT[/prefix]``."""
        return self._native.url

    @property
    def token_url(self) -> str:
        """The OAuth2 client-credentials endpoint."""
        return self._native.token_url

    @property
    def jwks_url(self) -> str:
        """Where the sandbox publishes its public key(s)."""
        return self._native.jwks_url

    @property
    def port(self) -> int:
        return self._native.port

    @property
    def sender_id(self) -> str:
        """The registry's ``sender_id`` (the ``receiver_id`` of requests to it)."""
        return self._native.sender_id

    @property
    def client_id(self) -> str:
        """OAuth2 client id, generated per sandbox."""
        return self._native.client_id

    @property
    def client_secret(self) -> str:
        """OAuth2 client secret, generated per sandbox (never shown in the repr)."""
        return self._native.client_secret

    # -- keys -----------------------------------------------------------------------------------

    def public_jwks(self) -> dict[str, Any]:
        """The sandbox's JWKS, ``{"keys": [...]}``: verifies everything the sandbox signs."""
        jwks: dict[str, Any] = self._native.public_jwks()
        return jwks

    def register_client_key(self, sender_id: str, key: str | bytes | dict[str, Any] | JWKS) -> None:
        """Trusts a public key (PEM, JWK, JWKS dict or :class:`JWKS`) for ``sender_id``.

        Keys add up. A key with a kid is chosen by the signature's kid; when no kid matches, the
        sender's single key, or else each of its keys given without a kid (PEM), is tried.
        Raises ``KeyFormatError`` for an unusable key.
        """
        self._native.register_client_key(sender_id, key)

    # -- data -----------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every record, in dataset order (enrollment updates included)."""
        records: list[dict[str, Any]] = self._native.records()
        return records

    def sample_identifiers(self, status: str = "active", n: int = 1) -> list[tuple[str, str]]:
        """Up to ``n`` ``(type, value)`` identifiers of beneficiaries of ``status``.

        A beneficiary's status is its strongest enrolment: active > suspended > graduated >
        deceased. ``"unknown"`` gives ``n`` identifiers that are in no record. Raises
        ``ValueError`` for another status.
        """
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        return self._native.sample_identifiers(status, n)

    # -- behaviour ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: ``requests`` (by route), ``requests_total``, ``responses`` (by status),
        ``faults`` (by kind), ``search_items``, ``records_returned``, ``tokens_issued``,
        ``auth_failures``, ``signature_failures``, ``spec_violations`` (requests refused in
        strict mode), ``callbacks_sent``, ``callbacks_failed``,
        ``callbacks_pending``, ``callbacks_discarded``."""
        stats: dict[str, Any] = self._native.stats()
        return stats

    def reset_stats(self) -> None:
        """Sets every counter back to zero."""
        self._native.reset_stats()

    def set_faults(self, faults: Mapping[str | int, Any] | None) -> None:
        """Replaces the faults (``None`` or ``{}``: none); the fault sequence restarts at 0.

        Raises ``ConfigError`` for an unknown key or a rate outside [0, 1].
        """
        self._native.set_faults(dict(faults) if faults is not None else None)

    def faults(self) -> dict[str, Any]:
        """The faults in force, in the form :meth:`set_faults` takes."""
        faults: dict[str, Any] = self._native.faults()
        return faults

    def client(self, **overrides: Any) -> Any:
        """A ``spp_dci_ibr.DCIClient`` configured for this sandbox.

        Defaults: ``sender_id="test.sp.local"``, a new Ed25519 ``signing_key`` (its public JWK is
        registered with the sandbox under ``key_id``, default ``"test-key-1"``; a given key, PEM
        or ``SigningKey``, is registered the same way; none with ``unsigned=True``), OAuth2
        client credentials, ``receiver_id`` the sandbox's, and ``registry_keys`` the sandbox's
        JWKS. Any ``DCIClient`` keyword overrides them. Raises ``ImportError`` when this build
        has no ``DCIClient``.
        """
        try:
            from spp_dci_ibr import DCIClient  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:  # pragma: no cover - until the client lands
            raise ImportError("spp_dci_ibr.DCIClient is not available in this build") from exc
        sender_id: str = overrides.pop("sender_id", "test.sp.local")
        options: dict[str, Any] = {
            "base_url": self.url,
            "sender_id": sender_id,
            "receiver_id": self.sender_id,
            "auth": "oauth2",
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "registry_keys": JWKS.from_json(self.public_jwks()),
        }
        if not overrides.get("unsigned", False):
            key_id: str = overrides.pop("key_id", "test-key-1")
            key = overrides.pop("signing_key", None)
            if key is None:
                key = SigningKey.generate()
            elif isinstance(key, (str, bytes)):
                key = SigningKey.from_pem(key)
            self.register_client_key(sender_id, key.public_jwk(sender_id, key_id))
            options.update(signing_key=key, key_id=key_id)
        options.update(overrides)
        return DCIClient(**options)

    def __repr__(self) -> str:
        if self.running:
            return f"IBRSandbox(url={self.url!r}, sender_id={self.sender_id!r}, running=True)"
        return f"IBRSandbox(sender_id={self.sender_id!r}, running=False)"

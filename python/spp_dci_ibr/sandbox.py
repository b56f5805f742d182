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

from typing import Any

from ._native import JWKS, SigningKey
from ._native import Sandbox as _NativeSandbox

__all__ = ["IBRSandbox"]


class IBRSandbox(_NativeSandbox):
    """An in-process IBR registry for tests, demos and benchmarks.

    One class: the native sandbox (its constructor, lifecycle, keys, data, faults and stats),
    with :meth:`client` added here. Every keyword of the constructor is documented below.

    Use it as a context manager (``with IBRSandbox() as sb: ...``) or call :meth:`start` (which
    returns the sandbox) and :meth:`stop`. Starting and stopping release the GIL; the server
    never calls into Python.

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

    ``reject_replays`` refuses a ``message_id`` seen before (409); ``allow_remote_callbacks``
    lets callbacks go to hosts other than loopback; ``signing_key`` / ``key_id`` are the
    sandbox's own key (default: a new Ed25519 key, ``sandbox-key-1``); ``client_id`` /
    ``client_secret`` fix the OAuth2 credentials instead of generating them.

    Raises ``ConfigError`` for a dataset or fault configuration that cannot be used (and, from
    :meth:`start`, for a port that cannot be bound); ``ValueError``/``TypeError`` for wrong
    argument types.
    """

    def client(self, **overrides: Any) -> Any:
        """A ``spp_dci_ibr.DCIClient`` configured for this sandbox.

        Defaults: ``sender_id="test.sp.local"``, a new Ed25519 ``signing_key`` (its public JWK is
        registered with the sandbox under ``key_id``, default ``"test-key-1"``; a given key, PEM
        or ``SigningKey``, is registered the same way; none with ``unsigned=True``), OAuth2
        client credentials, ``receiver_id`` the sandbox's, and ``registry_keys`` the sandbox's
        JWKS. Any ``DCIClient`` keyword overrides them.
        """
        from . import DCIClient  # at call time: the package's, which tests may patch

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

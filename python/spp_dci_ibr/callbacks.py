"""The DCI callback receiver: an Odoo-free FastAPI router for the five IBR callbacks.

The registry answers asynchronous requests by POSTing a signed envelope
``{"signature": str, "header": {...}, "message": {...}}`` to one of our callback routes
(PROTOCOL.md section 8). :func:`build_callback_router` returns a :class:`fastapi.APIRouter`
that authenticates such a callback and hands it, verified, to a *sink*. It knows nothing about
Odoo: where keys come from (:class:`KeyLookup`), how replays are remembered (:class:`ReplayStore`)
and what happens to an accepted callback (:class:`ResultSink`) are injected.

Every request goes through the same checks, in this order; the first failure answers:

==  =====================================================  ======  ==========================
#   check                                                  status  code
==  =====================================================  ======  ==========================
1   body size, read chunk by chunk and cut off past          413   ``err.request.bad``
    ``max_body_bytes`` (a larger ``Content-Length`` is
    refused before reading; a lying or missing one does
    not matter)
2   ``Content-Type`` is JSON (``application/json`` or         400   ``err.request.bad``
    ``application/*+json``; a charset, if any, is UTF-8)
3   strict UTF-8                                             400   ``err.request.bad``
4   nesting depth <= ``max_depth`` (scanned on the raw        400   ``err.request.bad``
    text, before parsing, in linear time)
5   JSON: no duplicate keys, no ``NaN``/``Infinity``,        400   ``err.request.bad``
    integers of at most 4300 digits, finite floats, no
    unpaired UTF-16 surrogate escapes
6   envelope: an object with ``header`` and ``message``      400   ``err.request.bad``
    objects, ``signature`` a string when present;
    ``header.message_id``, ``sender_id``, ``action``
    non-empty strings
7   ``header.action`` is the route's action                  400   ``err.request.bad``
8   the key lookup knows ``header.sender_id``                401   ``err.sender_id.invalid``
9   a signature is present (absent, null or ``""``)          401   ``err.signature.missing``
10  the signature's ``kidId`` names ``header.sender_id``     401   ``err.signature.invalid``
11  the signature verifies (outcome named in the message)    401   ``err.signature.invalid``
12  ``(sender_id, message_id)`` not seen before              409   ``err.request.bad``
13  the sink accepts it (:class:`CallbackRejected`)          any   the sink's code
==  =====================================================  ======  ==========================

Then: 200 ``{"message": {"ack_status": "ACK", "timestamp": ..., "correlation_id": ...,
"error": null}}``. Refusals: ``{"errors": [{"code": "err.…", "message": "…"}]}``.

Choice of codes. The spec's ``Error.code`` enum has no code for an oversized body, a replay or an
internal failure, so:

* 413 uses ``err.request.bad`` (``err.request.too_many_requests`` is about rate, not size);
* 409 uses ``err.request.bad``, and its message names the spec's header reason code
  ``rjct.message_id.duplicate`` (a ``rjct.*`` status code, not an ``err.*`` one);
* 500 (an exception in the key lookup, the replay store, the sink, or a misconfigured key)
  uses ``err.service.unavailable`` with a generic message; the details go to the log
  ``spp_dci_ibr.callbacks`` only;
* 503 ``err.service.unavailable`` when the replay store is full of live entries
  (:class:`spp_dci_ibr.exceptions.CapacityError`): the registry may retry later.

A missing signature (no ``signature`` member, ``null`` or ``""``) is the spec's
``err.signature.missing`` (401), not a malformed envelope; a ``signature`` of another JSON type
is malformed (400).

Nothing internal (exception text, traceback, key material, paths) is ever put in a response.
Logs name the sender and the message_id, never key material or bodies.

A sink failure (500 or :class:`CallbackRejected`) happens after the replay store has remembered
the message_id: a store that should let the registry redeliver must forget it itself (a
transactional store rolled back with the sink does this naturally).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from spp_dci_ibr import JWKS, ReplayGuard, check_signature
from spp_dci_ibr.exceptions import CapacityError, KeyFormatError

__all__ = [
    "CALLBACK_ROUTES",
    "CallbackEvent",
    "CallbackRejected",
    "KeyLookup",
    "KeyMaterial",
    "MemoryReplayStore",
    "ReplayStore",
    "ResultSink",
    "StaticKeyLookup",
    "build_callback_router",
]

_log = logging.getLogger("spp_dci_ibr.callbacks")

#: The five callback routes under the default prefix ``/registry``, keyed by the ``header.action``
#: each one accepts (the spec's action for ``/txn/on-status`` is ``txn-on-status``).
CALLBACK_ROUTES: Mapping[str, str] = {
    "on-search": "/registry/on-search",
    "on-subscribe": "/registry/on-subscribe",
    "on-unsubscribe": "/registry/on-unsubscribe",
    "notify": "/registry/notify",
    "txn-on-status": "/registry/txn/on-status",
}
_DEFAULT_PREFIX = "/registry"

#: One configured public key: a PEM (str or bytes), a JWK (dict; a ``{"keys": [...]}`` dict is
#: read as a JWKS) or a :class:`spp_dci_ibr.JWKS`.
KeyMaterial = str | bytes | dict[str, Any] | JWKS

_MAX_INT_DIGITS = 4300  # CPython's own int/str conversion limit
_MAX_FLOAT_CHARS = 400  # a float literal longer than this is not data, it is an attack
_LOG_FIELD_CHARS = 128  # untrusted values are cut to this length in log records

_ERR_BAD = "err.request.bad"
_ERR_SENDER = "err.sender_id.invalid"
_ERR_SIG_MISSING = "err.signature.missing"
_ERR_SIG_INVALID = "err.signature.invalid"
_ERR_INTERNAL = "err.service.unavailable"
_INTERNAL_MESSAGE = "internal error; the callback was not processed"

# Items of these message members carry a `reference_id` (SearchResponse, SubscribeResponse,
# NotifyEventRequest, TxnStatusResponse and the spellings seen in the wild).
_REFERENCE_LISTS = (
    "search_response",
    "subscribe_response",
    "unsubscribe_response",
    "notify_event",
    "txnstatus_response",
    "txn_status_response",
)


# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackEvent:
    """A callback that passed every check: authenticated, fresh and not a replay.

    ``header`` and ``message`` are the parsed JSON exactly as received (and as verified);
    ``raw_body`` the bytes as received, for audit. ``transaction_id`` and ``correlation_id`` come
    from ``message`` (None when absent or not strings); ``reference_ids`` are the ``reference_id``
    of the items of ``message.search_response`` / ``subscribe_response`` / ``notify_event`` /
    ``txnstatus_response`` (in order, without repeats). ``received_at`` is Unix seconds.
    """

    action: str
    sender_id: str
    message_id: str
    kid: str
    header: dict[str, Any]
    message: dict[str, Any]
    raw_body: bytes
    transaction_id: str | None
    correlation_id: str | None
    reference_ids: tuple[str, ...]
    received_at: int


class CallbackRejected(Exception):
    """Raised by a :class:`ResultSink` to refuse a callback with a chosen answer.

    ``status`` must be a 4xx or 5xx HTTP status (anything else is answered as 500), ``code`` an
    ``err.*`` code and ``message`` a text for the sender: both are sent as they are.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class KeyLookup(Protocol):
    """Finds the public keys of a sender.

    Called with ``header.sender_id`` and the signature's ``kidId`` (None when the signature has
    none). Returns the sender's keys — the router picks the one whose kid is the signature's, or
    the only one — or None when the sender is unknown (401 ``err.sender_id.invalid``).
    """

    def __call__(self, sender_id: str, kid: str | None, /) -> Sequence[KeyMaterial] | None: ...


class ReplayStore(Protocol):
    """Remembers ``(sender_id, message_id)`` pairs until ``expires`` (Unix seconds)."""

    def remember(self, sender_id: str, message_id: str, expires: int) -> bool:
        """Record the pair; return False if it was already recorded and has not expired."""
        ...


class ResultSink(Protocol):
    """Receives each accepted callback. May raise :class:`CallbackRejected`; any other
    exception is answered 500 with a generic body and logged."""

    def __call__(self, event: CallbackEvent, /) -> None: ...


class MemoryReplayStore:
    """In-process :class:`ReplayStore` on the native :class:`spp_dci_ibr.ReplayGuard`.

    Per process: with several workers, each has its own memory (use a shared store there).
    ``clock`` (Unix seconds) decides what has expired; ``remember(..., now=...)`` overrides it.
    """

    def __init__(
        self, max_entries: int = 100_000, *, clock: Callable[[], int] | None = None
    ) -> None:
        self._guard = ReplayGuard(max_entries)
        self._clock = clock

    def remember(
        self, sender_id: str, message_id: str, expires: int, *, now: int | None = None
    ) -> bool:
        """True the first time (the pair is kept until ``expires``), False for a replay."""
        if now is None and self._clock is not None:
            now = int(self._clock())
        return bool(self._guard.check(sender_id, message_id, expires, now))


class StaticKeyLookup:
    """A :class:`KeyLookup` over a fixed mapping ``{sender_id: [PEM | JWK dict | JWKS, ...]}``.

    A single key instead of a list is accepted; a dict with a ``keys`` member is read as a JWKS
    (once, here). Unknown senders get None.
    """

    def __init__(self, keys: Mapping[str, KeyMaterial | Sequence[KeyMaterial]]) -> None:
        table: dict[str, tuple[KeyMaterial, ...]] = {}
        for sender_id, value in keys.items():
            items: Sequence[KeyMaterial]
            if isinstance(value, (str, bytes, dict, JWKS)):
                items = [value]
            else:
                items = value
            table[sender_id] = tuple(_as_key_material(item) for item in items)
        self._keys = table

    def __call__(self, sender_id: str, kid: str | None, /) -> Sequence[KeyMaterial] | None:
        return self._keys.get(sender_id)

    def __repr__(self) -> str:
        return f"StaticKeyLookup(senders={sorted(self._keys)!r})"


# --------------------------------------------------------------------------------------------
# The router
# --------------------------------------------------------------------------------------------


def build_callback_router(
    *,
    key_lookup: KeyLookup,
    replay_store: ReplayStore,
    sink: ResultSink,
    prefix: str = _DEFAULT_PREFIX,
    max_body_bytes: int = 1 << 20,
    max_skew: int = 60,
    max_lifetime: int = 3600,
    max_depth: int = 64,
    clock: Callable[[], int] | None = None,
) -> APIRouter:
    """Build the router serving the five callback routes of :data:`CALLBACK_ROUTES`.

    ``prefix`` replaces ``/registry`` (``""`` mounts the routes at the root). ``max_skew`` and
    ``max_lifetime`` are passed to :func:`spp_dci_ibr.check_signature`; ``clock`` returns Unix
    seconds (default: ``time.time``). Raises ``ValueError`` for a bad prefix or limit.

    The key lookup, the replay store and the sink are called in a worker thread (as FastAPI does
    for plain ``def`` endpoints), once per request, never for a refused body.
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must be empty or start with '/' and not end with '/'")
    for name, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_depth", max_depth),
        ("max_lifetime", max_lifetime),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer")
    if not isinstance(max_skew, int) or max_skew < 0:
        raise ValueError("max_skew must be a non-negative integer")

    processor = _Processor(
        key_lookup=key_lookup,
        replay_store=replay_store,
        sink=sink,
        max_depth=max_depth,
        max_skew=max_skew,
        max_lifetime=max_lifetime,
        clock=clock,
    )
    router = APIRouter(prefix=prefix)
    for action, default_path in CALLBACK_ROUTES.items():
        suffix = default_path[len(_DEFAULT_PREFIX) :]
        router.add_api_route(
            suffix,
            _make_endpoint(processor, action, max_body_bytes),
            methods=["POST"],
            name=f"dci_callback_{action.replace('-', '_')}",
            summary=f"DCI callback {action}",
            response_class=JSONResponse,
            openapi_extra=_OPENAPI_BODY,
        )
    return router


_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["signature", "header", "message"],
                    "properties": {
                        "signature": {"type": "string"},
                        "header": {"type": "object"},
                        "message": {"type": "object"},
                    },
                }
            }
        },
    }
}


def _make_endpoint(
    processor: _Processor, action: str, max_body_bytes: int
) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> JSONResponse:
        try:
            raw = await _read_body(request, max_body_bytes)
            status, body = await run_in_threadpool(
                processor.process, action, raw, request.headers.get("content-type")
            )
        except _Refusal as refusal:
            status, body = refusal.answer()
            _log.warning("DCI callback %s refused: %s %s", action, refusal.code, refusal.message)
        except ClientDisconnect:
            _log.warning("DCI callback %s: client disconnected before the body was read", action)
            status, body = 400, _errors(_ERR_BAD, "incomplete request body")
        except Exception:
            _log.exception("DCI callback %s: unexpected error", action)
            status, body = 500, _errors(_ERR_INTERNAL, _INTERNAL_MESSAGE)
        return JSONResponse(body, status_code=status)

    endpoint.__name__ = f"dci_callback_{action.replace('-', '_')}"
    return endpoint


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read chunk by chunk and abandoned as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not declared.isdigit() or not declared.isascii():
            raise _Refusal(400, _ERR_BAD, "invalid Content-Length")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, _ERR_BAD, f"request body larger than {limit} bytes")


class _Refusal(Exception):
    """An answer other than 200, decided by one of the checks."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message

    def answer(self) -> tuple[int, dict[str, Any]]:
        return self.status, _errors(self.code, self.message)


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


class _Processor:
    """Everything after the body has been read; synchronous, runs in a worker thread."""

    def __init__(
        self,
        *,
        key_lookup: KeyLookup,
        replay_store: ReplayStore,
        sink: ResultSink,
        max_depth: int,
        max_skew: int,
        max_lifetime: int,
        clock: Callable[[], int] | None,
    ) -> None:
        self._key_lookup = key_lookup
        self._replay_store = replay_store
        self._sink = sink
        self._max_depth = max_depth
        self._max_skew = max_skew
        self._max_lifetime = max_lifetime
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock()) if self._clock is not None else int(time.time())

    def process(
        self, action: str, raw: bytes, content_type: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Run checks 2-13 on ``raw``; return (status, JSON body). Raises only on bugs."""
        now = self._now()
        sender_id: str | None = None
        message_id: str | None = None
        try:
            signature, header, message = _parse_envelope(raw, content_type, self._max_depth)
            sender_id = header["sender_id"]
            message_id = header["message_id"]
            if header["action"] != action:
                raise _Refusal(
                    400, _ERR_BAD, f"header.action does not match this route; expected {action!r}"
                )
            kid = _signature_kid(signature) if signature else None
            keys = self._key_lookup(header["sender_id"], kid)
            if keys is None:
                raise _Refusal(401, _ERR_SENDER, "unknown sender_id")
            if not signature:
                raise _Refusal(401, _ERR_SIG_MISSING, "the callback is not signed")
            checked_kid, expires = self._verify(signature, header, message, keys, kid, now)
            if not self._replay_store.remember(header["sender_id"], header["message_id"], expires):
                raise _Refusal(
                    409,
                    _ERR_BAD,
                    "rjct.message_id.duplicate: this message_id was already received",
                )
            event = CallbackEvent(
                action=action,
                sender_id=header["sender_id"],
                message_id=header["message_id"],
                kid=checked_kid,
                header=header,
                message=message,
                raw_body=raw,
                transaction_id=_optional_str(message.get("transaction_id")),
                correlation_id=_optional_str(message.get("correlation_id")),
                reference_ids=_reference_ids(message),
                received_at=now,
            )
            try:
                self._sink(event)
            except CallbackRejected as rejected:
                return self._rejected_by_sink(action, sender_id, message_id, rejected)
        except _Refusal as refusal:
            _log.warning(
                "DCI callback %s refused (%s %s: %s) sender_id=%r message_id=%r",
                action,
                refusal.status,
                refusal.code,
                refusal.message,
                _clip(sender_id),
                _clip(message_id),
            )
            return refusal.answer()
        except CapacityError:
            # The in-memory replay guard is full of live entries: a temporary condition.
            _log.error("DCI callback %s: the replay store is full; refusing for now", action)
            return 503, _errors(_ERR_INTERNAL, "too many callbacks in flight; retry later")
        except Exception:
            _log.exception(
                "DCI callback %s failed: sender_id=%r message_id=%r",
                action,
                _clip(sender_id),
                _clip(message_id),
            )
            return 500, _errors(_ERR_INTERNAL, _INTERNAL_MESSAGE)
        _log.info(
            "DCI callback %s accepted: sender_id=%r message_id=%r transaction_id=%r",
            action,
            _clip(sender_id),
            _clip(message_id),
            _clip(event.transaction_id),
        )
        correlation_id = event.correlation_id or header["message_id"]
        return 200, {
            "message": {
                "ack_status": "ACK",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "correlation_id": correlation_id,
            }
        }

    @staticmethod
    def _rejected_by_sink(
        action: str, sender_id: str | None, message_id: str | None, rejected: CallbackRejected
    ) -> tuple[int, dict[str, Any]]:
        status, code, text = rejected.status, rejected.code, rejected.message
        if not (isinstance(status, int) and 400 <= status <= 599) or not isinstance(code, str):
            _log.error(
                "DCI callback %s: sink raised CallbackRejected with status %r", action, status
            )
            return 500, _errors(_ERR_INTERNAL, _INTERNAL_MESSAGE)
        _log.warning(
            "DCI callback %s rejected by the sink (%s %s) sender_id=%r message_id=%r",
            action,
            status,
            code,
            _clip(sender_id),
            _clip(message_id),
        )
        return status, _errors(code, str(text))

    def _verify(
        self,
        signature: str,
        header: dict[str, Any],
        message: dict[str, Any],
        keys: Sequence[KeyMaterial],
        kid: str | None,
        now: int,
    ) -> tuple[str, int]:
        """Check 10 and 11: return (kid, expires) of a valid signature or refuse."""
        sender_id: str = header["sender_id"]
        if kid is None:
            _invalid("malformed", "the signature has no single kidId")
        parts = kid.rsplit("|", 2)
        if len(parts) != 3 or parts[0] != sender_id:
            raise _Refusal(
                401, _ERR_SIG_INVALID, "the signature's kidId does not name header.sender_id"
            )
        candidates = _candidate_keys(keys, kid)
        if not candidates:
            _invalid("unknown_key", "no configured key of this sender has this kidId")
        outcome: str | None = None
        detail: str | None = None
        unreadable = 0
        for key in candidates:
            try:
                check = check_signature(
                    signature,
                    header,
                    message,
                    key,
                    now=now,
                    max_skew=self._max_skew,
                    max_lifetime=self._max_lifetime,
                )
            except KeyFormatError:
                # A configuration problem on our side, not the sender's fault: log, try the next.
                unreadable += 1
                _log.error("DCI callback: a configured key of sender %r is unreadable", sender_id)
                continue
            if check.outcome == "valid":
                if check.kid != kid or check.expires is None:
                    _invalid("invalid", "the signature's kidId is ambiguous")
                return kid, int(check.expires)
            if outcome is None or outcome == "unknown_key":
                outcome = str(check.outcome)
                # Why a field is malformed (a parse error, never key material), when told.
                detail = check.detail
        if outcome is None and unreadable:
            raise RuntimeError("no configured key of the sender could be read")
        outcome = outcome or "unknown_key"
        if outcome == "malformed" and isinstance(detail, str) and detail:
            _invalid(outcome, detail[:200])
        _invalid(outcome, _OUTCOME_TEXT.get(outcome, ""))


_OUTCOME_TEXT = {
    "invalid": "the signature does not match the header and message",
    "expired": "the signature has expired",
    "not_yet_valid": "the signature's created time is in the future",
    "lifetime_too_long": "the signature's lifetime is longer than accepted",
    "malformed": "the signature field cannot be parsed",
    "unknown_key": "no configured key of this sender has this kidId",
}


def _invalid(outcome: str, text: str) -> NoReturn:
    message = f"signature {outcome}: {text}" if text else f"signature {outcome}"
    raise _Refusal(401, _ERR_SIG_INVALID, message)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_JSON_MEDIA = re.compile(r"application/(?:[A-Za-z0-9!#$&^_.-]+\+)?json")


def _parse_envelope(
    raw: bytes, content_type: str | None, max_depth: int
) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Checks 2-6: return (signature or None, header, message) or refuse with 400."""
    _check_content_type(content_type)
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _Refusal(400, _ERR_BAD, "the body is not valid UTF-8") from None
    if _too_deep(text, max_depth):
        raise _Refusal(400, _ERR_BAD, f"JSON nested deeper than {max_depth} levels")
    try:
        body = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except _BadJSON as exc:
        raise _Refusal(400, _ERR_BAD, f"invalid JSON: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise _Refusal(400, _ERR_BAD, f"invalid JSON: {exc.msg} ({where})") from None
    except (ValueError, RecursionError):
        raise _Refusal(400, _ERR_BAD, "invalid JSON") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(body):
        raise _Refusal(400, _ERR_BAD, "invalid JSON: unpaired surrogate escape in a string")

    if not isinstance(body, dict):
        raise _Refusal(400, _ERR_BAD, "the body must be a JSON object")
    header = body.get("header")
    if not isinstance(header, dict):
        raise _Refusal(400, _ERR_BAD, "header must be an object")
    message = body.get("message")
    if not isinstance(message, dict):
        raise _Refusal(400, _ERR_BAD, "message must be an object")
    signature = body.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise _Refusal(400, _ERR_BAD, "signature must be a string")
    for field in ("message_id", "sender_id", "action"):
        value = header.get(field)
        if not isinstance(value, str) or not value:
            raise _Refusal(400, _ERR_BAD, f"header.{field} must be a non-empty string")
    return signature, header, message


def _check_content_type(content_type: str | None) -> None:
    if not content_type:
        raise _Refusal(400, _ERR_BAD, "Content-Type must be application/json")
    media_type, *params = content_type.split(";")
    if not _JSON_MEDIA.fullmatch(media_type.strip().lower()):
        raise _Refusal(400, _ERR_BAD, "Content-Type must be application/json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise _Refusal(400, _ERR_BAD, "the body must be UTF-8 encoded JSON")


_STRUCTURE = re.compile(r'[\[\]{}"\\]')


def _too_deep(text: str, limit: int) -> bool:
    """True if ``text`` nests arrays/objects deeper than ``limit``; one linear scan.

    Only brackets outside strings count. Invalid JSON may be scanned wrongly, which is harmless:
    the parser refuses it next.
    """
    depth = 0
    in_string = False
    escaped_until = -1
    for match in _STRUCTURE.finditer(text):
        char = match.group()
        pos = match.start()
        if in_string:
            if pos < escaped_until:
                continue
            if char == "\\":
                escaped_until = pos + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class _BadJSON(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _BadJSON("duplicate object key")
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    raise _BadJSON(f"{name} is not JSON")


def _bounded_int(literal: str) -> int:
    if len(literal) - literal.startswith("-") > _MAX_INT_DIGITS:
        raise _BadJSON(f"integer longer than {_MAX_INT_DIGITS} digits")
    return int(literal)


def _finite_float(literal: str) -> float:
    if len(literal) > _MAX_FLOAT_CHARS:
        raise _BadJSON(f"number longer than {_MAX_FLOAT_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise _BadJSON("number out of range")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """True if a string (key or value) in ``value`` holds an unpaired UTF-16 surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: list[Any] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return True
    return False


_SIGNATURE_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*"([^"]*)"')


def _signature_kid(signature: str) -> str | None:
    """The ``kidId`` (or ``keyId``) of a signature field; None if absent or given twice."""
    kids = {
        value
        for name, value in _SIGNATURE_PARAM.findall(signature)
        if name in ("kidId", "keyId")  # the names the native parser reads, case and all
    }
    return kids.pop() if len(kids) == 1 else None


def _as_key_material(item: KeyMaterial) -> KeyMaterial:
    if isinstance(item, dict) and "keys" in item:
        return JWKS.from_json(item)
    return item


def _candidate_keys(keys: Sequence[KeyMaterial], kid: str) -> list[KeyMaterial]:
    """The keys to try for ``kid``: those whose kid is ``kid``, else the sender's only key.

    A JWKS is passed whole: the native check picks its key by kid (or its only key).
    """
    entries: list[tuple[list[str | None], KeyMaterial]] = []
    for entry in keys:
        material = _as_key_material(entry)
        if isinstance(material, JWKS):
            entries.append((list(material.kids), material))
        elif isinstance(material, dict):
            key_kid = material.get("kid")
            entries.append(([key_kid if isinstance(key_kid, str) else None], material))
        else:
            entries.append(([None], material))
    matching = [material for kids, material in entries if kid in kids]
    if matching:
        return matching
    if sum(len(kids) for kids, _ in entries) == 1:
        return [material for kids, material in entries if kids]
    return []


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _reference_ids(message: dict[str, Any]) -> tuple[str, ...]:
    found: dict[str, None] = {}

    def collect(container: Any, depth: int) -> None:
        if not isinstance(container, dict) or depth > 2:
            return
        for name in _REFERENCE_LISTS:
            items = container.get(name)
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                reference_id = item.get("reference_id")
                if isinstance(reference_id, str) and reference_id:
                    found.setdefault(reference_id, None)
                # TxnStatusResponse nests a SearchResponse under txn_status.
                collect(item.get("txn_status"), depth + 1)

    collect(message, 0)
    return tuple(found)


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= _LOG_FIELD_CHARS else value[:_LOG_FIELD_CHARS] + "…"

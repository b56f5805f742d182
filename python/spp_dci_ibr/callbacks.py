"""The DCI callback receiver: an Odoo-free FastAPI router for the IBR callbacks.

The registry answers asynchronous requests by POSTing a signed envelope
``{"signature": str, "header": {...}, "message": {...}}`` to one of our callback routes
(PROTOCOL.md section 8). :func:`build_callback_router` returns a :class:`fastapi.APIRouter`
that authenticates such a callback and hands it, verified, to a *sink*. It knows nothing about
Odoo: where keys come from (:class:`KeyLookup`), how replays are remembered (:class:`ReplayStore`)
and what happens to an accepted callback (:class:`ResultSink`) are injected.

Routes, under ``prefix`` (default ``/registry``): the five of :data:`CALLBACK_ROUTES`, each
taking its own ``header.action``, and :data:`ANY_CALLBACK_ROUTE` (``{prefix}/callback``), which
takes any of the five and dispatches on ``header.action`` — for registries that post every
callback to the one ``sender_uri`` they were given. Every other method or path under the prefix
(a trailing slash included) is answered in the same error shape, never redirected: 405
``err.request.bad`` for another method on a callback route, 404 ``err.request.not_found``
otherwise.

Every check up to the signature is one native call (:class:`spp_dci_ibr.CallbackVerifier`, the
GIL released), in this order; the first failure answers. Steps 1-6 are linear in the body and
need no key: a bogus callback costs microseconds and never reaches the key lookup.

==  =====================================================  ======  ==========================
#   check                                                  status  code
==  =====================================================  ======  ==========================
1   body size, read chunk by chunk and cut off past          413   ``err.request.bad``
    ``max_body_bytes`` (a larger ``Content-Length`` is
    refused before reading; a lying or missing one does
    not matter)
2   ``Content-Type`` is JSON (``application/json`` or         400   ``err.request.bad``
    ``application/*+json``; a charset, if any, is UTF-8)
3   strict JSON: UTF-8, nesting depth <= ``max_depth``       400   ``err.request.bad``
    (checked on the raw text first), no duplicate keys,
    no ``NaN``/``Infinity``, integers of at most 4300
    digits, finite floats, no unpaired surrogate escapes
4   envelope: an object with ``header`` and ``message``      400   ``err.request.bad``
    objects, ``signature`` a string when present;
    ``header.message_id``, ``sender_id``, ``action``
    non-empty strings
5   ``header.action`` is the route's (any of the five on     400   ``err.request.bad``
    the universal route)
6   when signed: the field is at most 4096 bytes and         401   ``err.signature.invalid``
    parses; its ``kidId`` is ``<sender_id>|<key>|<alg>``
    naming ``header.sender_id``; algorithm, lifetime,
    ``created`` and ``expires`` are acceptable
7   the key lookup knows ``header.sender_id`` (called        401   ``err.sender_id.invalid``
    once, in a worker thread)
8   a signature is present (absent, null or ``""``)          401   ``err.signature.missing``
9   a configured key has the signature's kid, or the         401   ``err.signature.invalid``
    sender has only one key; a :class:`RemoteJWKS` is
    consulted only when no other key has the kid
10  the signature verifies (as received, else in at most     401   ``err.signature.invalid``
    two OpenSPP-normalised header forms)
11  ``(sender_id, message_id)`` not seen before              409   ``err.request.bad``
12  the sink accepts it (:class:`CallbackRejected`)          any   the sink's code
==  =====================================================  ======  ==========================

Then: 200 ``{"message": {"ack_status": "ACK", "timestamp": ..., "correlation_id": ...}}``
(``error`` omitted, as the spec's ``Response`` schema wants). Refusals:
``{"errors": [{"code": "err.…", "message": "…"}]}``; a 401 ``err.signature.invalid`` message
names the outcome (``signature malformed: …``, ``signature expired: …``, ``signature
unknown_key: …``).

What the sink sees is what was verified: when the header verified only in a normalised form
(schema defaults filled in, null members kept or dropped), :attr:`CallbackEvent.header` is that
form, never a raw member the signature did not cover.

Choice of codes. The spec's ``Error.code`` enum has no code for an oversized body, a replay or an
internal failure, so:

* 413 uses ``err.request.bad`` (``err.request.too_many_requests`` is about rate, not size);
* 409 uses ``err.request.bad``, and its message names the spec's header reason code
  ``rjct.message_id.duplicate`` (a ``rjct.*`` status code, not an ``err.*`` one);
* 500 (an exception in the key lookup, the replay store, the sink, or no readable configured
  key) uses ``err.service.unavailable`` with a generic message; the details go to the log
  ``spp_dci_ibr.callbacks`` only;
* 503 ``err.service.unavailable`` when the replay store is full of live entries
  (:class:`spp_dci_ibr.exceptions.CapacityError`): the registry may retry later.

Nothing internal (exception text, traceback, key material, paths) is ever put in a response.
Logs name the sender and the message_id, never key material or bodies.

A sink failure (500 or :class:`CallbackRejected`) happens after the replay store has remembered
the message_id: a store that should let the registry redeliver must forget it itself (a
transactional store rolled back with the sink does this naturally).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from spp_dci_ibr import JWKS, CallbackRefusal, CallbackVerifier, RemoteJWKS, ReplayGuard
from spp_dci_ibr.exceptions import CapacityError

__all__ = [
    "ANY_CALLBACK_ROUTE",
    "CALLBACK_ROUTES",
    "CallbackEvent",
    "CallbackRejected",
    "KeyLookup",
    "KeyMaterial",
    "MemoryReplayStore",
    "RemoteJWKS",
    "ReplayStore",
    "ResultSink",
    "StaticKeyLookup",
    "build_callback_router",
]

_log = logging.getLogger("spp_dci_ibr.callbacks")

_DEFAULT_PREFIX = "/registry"

#: The five callback routes under the default prefix ``/registry``, keyed by the ``header.action``
#: each one accepts (the spec's action for ``/txn/on-status`` is ``txn-on-status``).
CALLBACK_ROUTES: Mapping[str, str] = {
    action: _DEFAULT_PREFIX + path for action, path in CallbackVerifier.routes()
}

#: The route under the default prefix that accepts every callback action of
#: :data:`CALLBACK_ROUTES`, dispatched on ``header.action``: give it to a registry that posts
#: every callback to one URL (``DCIClient(callback_uri=...)``).
ANY_CALLBACK_ROUTE: str = _DEFAULT_PREFIX + CallbackVerifier.ANY_ACTION_PATH

#: One configured public key: a PEM (str or bytes), a JWK (dict; a ``{"keys": [...]}`` dict is
#: read as a JWKS), a :class:`spp_dci_ibr.JWKS`, or a :class:`RemoteJWKS` (keys published at a
#: URL, fetched through the process-wide cache only when no other key has the signature's kid).
KeyMaterial = str | bytes | dict[str, Any] | JWKS | RemoteJWKS

_LOG_FIELD_CHARS = 128  # untrusted values are cut to this length in log records

_ERR_BAD = "err.request.bad"
_ERR_NOT_FOUND = "err.request.not_found"
_ERR_INTERNAL = "err.service.unavailable"
_INTERNAL_MESSAGE = "internal error; the callback was not processed"


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackEvent:
    """A callback that passed every check: authenticated, fresh and not a replay.

    ``action`` is ``header.action`` (on the universal route, the one dispatched on). ``header``
    and ``message`` are the parsed JSON as verified: the header as received, or in the
    normalised form that verified (never a raw member the signature did not cover);
    ``raw_body`` the bytes as received, for audit. ``transaction_id`` and ``correlation_id``
    come from ``message`` (None when absent or not non-empty strings); ``reference_ids`` are the
    ``reference_id`` of the items of ``message.search_response`` / ``subscribe_response`` /
    ``notify_event`` / ``txnstatus_response`` (in order, without repeats). ``received_at`` is
    Unix seconds.
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

    Called at most once per callback, only for one that passed every check needing no key, with
    ``header.sender_id`` and the signature's ``kidId`` (None when the callback is unsigned).
    Returns the sender's keys (:data:`KeyMaterial` items; one item alone is fine) — the router
    picks those whose kid is the signature's, or the only one — or None when the sender is
    unknown (401 ``err.sender_id.invalid``). It should not fetch anything itself: return a
    :class:`RemoteJWKS` for keys published at a URL.
    """

    def __call__(
        self, sender_id: str, kid: str | None, /
    ) -> KeyMaterial | Sequence[KeyMaterial] | None: ...


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
    """A :class:`KeyLookup` over a fixed mapping ``{sender_id: [KeyMaterial, ...]}``.

    A single key instead of a list is accepted. Unknown senders get None.
    """

    def __init__(self, keys: Mapping[str, KeyMaterial | Sequence[KeyMaterial]]) -> None:
        table: dict[str, tuple[KeyMaterial, ...]] = {}
        for sender_id, value in keys.items():
            if isinstance(value, (str, bytes, dict, JWKS, RemoteJWKS)):
                table[sender_id] = (value,)
            else:
                table[sender_id] = tuple(value)
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
    """Build the router serving :data:`CALLBACK_ROUTES` and :data:`ANY_CALLBACK_ROUTE`.

    ``prefix`` replaces ``/registry`` (``""`` mounts the routes at the root; then only the
    callback paths themselves, not every path, get the contract's 404/405 answers).
    ``max_skew`` and ``max_lifetime`` (seconds) bound the signature's time window, ``max_depth``
    (1 to 128) the JSON nesting; ``clock`` returns Unix seconds (default: ``time.time``).
    Raises ``ValueError`` for a bad prefix or limit.

    The key lookup, the replay store and the sink are called in a worker thread (as FastAPI does
    for plain ``def`` endpoints), at most once per request, never for a refused body.
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must be empty or start with '/' and not end with '/'")
    try:
        verifier = CallbackVerifier(
            max_body_bytes=max_body_bytes,
            max_depth=max_depth,
            max_skew=max_skew,
            max_lifetime=max_lifetime,
        )
    except (TypeError, OverflowError) as exc:
        raise ValueError(f"limits must be non-negative integers: {exc}") from None
    processor = _Processor(
        verifier=verifier, key_lookup=key_lookup, replay_store=replay_store, sink=sink, clock=clock
    )
    router = APIRouter(prefix=prefix)
    routes: list[tuple[str | None, str]] = [*CallbackVerifier.routes()]
    routes.append((None, CallbackVerifier.ANY_ACTION_PATH))
    for action, path in routes:
        name = f"dci_callback_{(action or 'any').replace('-', '_')}"
        router.add_api_route(
            path,
            _make_endpoint(processor, action, name),
            methods=["POST"],
            name=name,
            summary=f"DCI callback {action or '(any action)'}",
            response_class=JSONResponse,
            openapi_extra=_OPENAPI_BODY,
        )
    # Everything else under the prefix gets the contract's error shape (never FastAPI's
    # {"detail": ...}, never a trailing-slash redirect). An ASGI app as endpoint (typed as a
    # request handler by FastAPI, served as an app by Starlette) makes a route that matches
    # every method, in every FastAPI/Starlette version.
    method_not_allowed: Any = _ErrorAnswer(
        405, _ERR_BAD, "method not allowed; DCI callbacks are POSTed", allow="POST"
    )
    not_found: Any = _ErrorAnswer(404, _ERR_NOT_FOUND, "no DCI callback route at this path")
    for _, path in routes:
        router.add_route(prefix + path, method_not_allowed, include_in_schema=False)
        router.add_route(prefix + path + "/", not_found, include_in_schema=False)
    if prefix:
        router.add_route(prefix, not_found, include_in_schema=False)
        router.add_route(prefix + "/{rest:path}", not_found, include_in_schema=False)
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


class _ErrorAnswer:
    """An ASGI app answering every request with one error in the contract's shape."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        self._status = status
        self._body = _errors(code, message)
        self._headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(self._body, self._status, headers=self._headers)
        await response(scope, receive, send)


def _make_endpoint(
    processor: _Processor, action: str | None, name: str
) -> Callable[[Request], Any]:
    label = action or "(any action)"

    async def endpoint(request: Request) -> JSONResponse:
        try:
            raw = await _read_body(request, processor.verifier.max_body_bytes)
            if raw is None:
                status, body = processor.refused(label, processor.verifier.too_large())
            else:
                status, body = await run_in_threadpool(
                    processor.process, action, raw, request.headers.get("content-type")
                )
        except _BadFraming as bad:
            _log.warning("DCI callback %s refused: %s", label, bad.message)
            status, body = 400, _errors(_ERR_BAD, bad.message)
        except ClientDisconnect:
            _log.warning("DCI callback %s: client disconnected before the body was read", label)
            status, body = 400, _errors(_ERR_BAD, "incomplete request body")
        except Exception:
            _log.exception("DCI callback %s: unexpected error", label)
            status, body = 500, _errors(_ERR_INTERNAL, _INTERNAL_MESSAGE)
        return JSONResponse(body, status_code=status)

    endpoint.__name__ = name
    return endpoint


class _BadFraming(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, read chunk by chunk; None, abandoned, as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not declared.isdigit() or not declared.isascii():
            raise _BadFraming("invalid Content-Length")
        if int(declared) > limit:
            return None
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Processor:
    """Everything after the body has been read; synchronous, runs in a worker thread."""

    def __init__(
        self,
        *,
        verifier: CallbackVerifier,
        key_lookup: KeyLookup,
        replay_store: ReplayStore,
        sink: ResultSink,
        clock: Callable[[], int] | None,
    ) -> None:
        self.verifier = verifier
        self._key_lookup = key_lookup
        self._replay_store = replay_store
        self._sink = sink
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock()) if self._clock is not None else int(time.time())

    @staticmethod
    def refused(label: str, refusal: CallbackRefusal) -> tuple[int, dict[str, Any]]:
        _log.warning(
            "DCI callback %s refused (%s %s: %s) sender_id=%r message_id=%r",
            label,
            refusal.status,
            refusal.code,
            refusal.message,
            refusal.sender_id,
            refusal.message_id,
        )
        return refusal.status, _errors(refusal.code, refusal.message)

    def process(
        self, action: str | None, raw: bytes, content_type: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Checks 2-12 on ``raw``; returns (status, JSON body). Raises only on bugs."""
        label = action or "(any action)"
        now = self._now()
        sender_id = message_id = None
        try:
            verdict = self.verifier.verify(
                raw, content_type, self._key_lookup, action=action, now=now
            )
            if isinstance(verdict, CallbackRefusal):
                return self.refused(label, verdict)
            label, sender_id, message_id = verdict.action, verdict.sender_id, verdict.message_id
            if not self._replay_store.remember(sender_id, message_id, verdict.expires):
                _log.warning(
                    "DCI callback %s refused (409: replay) sender_id=%r message_id=%r",
                    label,
                    _clip(sender_id),
                    _clip(message_id),
                )
                return 409, _errors(
                    _ERR_BAD, "rjct.message_id.duplicate: this message_id was already received"
                )
            event = CallbackEvent(
                action=verdict.action,
                sender_id=sender_id,
                message_id=message_id,
                kid=verdict.kid,
                header=verdict.header,
                message=verdict.message,
                raw_body=raw,
                transaction_id=verdict.transaction_id,
                correlation_id=verdict.correlation_id,
                reference_ids=verdict.reference_ids,
                received_at=now,
            )
            try:
                self._sink(event)
            except CallbackRejected as rejected:
                return self._rejected_by_sink(label, sender_id, message_id, rejected)
        except CapacityError:
            # The in-memory replay guard is full of live entries: a temporary condition.
            _log.error("DCI callback %s: the replay store is full; refusing for now", label)
            return 503, _errors(_ERR_INTERNAL, "too many callbacks in flight; retry later")
        except Exception:
            _log.exception(
                "DCI callback %s failed: sender_id=%r message_id=%r",
                label,
                _clip(sender_id),
                _clip(message_id),
            )
            return 500, _errors(_ERR_INTERNAL, _INTERNAL_MESSAGE)
        _log.info(
            "DCI callback %s accepted: sender_id=%r message_id=%r transaction_id=%r",
            label,
            _clip(sender_id),
            _clip(message_id),
            _clip(event.transaction_id),
        )
        return 200, {
            "message": {
                "ack_status": "ACK",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "correlation_id": event.correlation_id or message_id,
            }
        }

    @staticmethod
    def _rejected_by_sink(
        label: str, sender_id: str | None, message_id: str | None, rejected: CallbackRejected
    ) -> tuple[int, dict[str, Any]]:
        status, code, text = rejected.status, rejected.code, rejected.message
        if not (isinstance(status, int) and 400 <= status <= 599) or not isinstance(code, str):
            _log.error(
                "DCI callback %s: sink raised CallbackRejected with status %r", label, status
            )
            return 500, _errors(_ERR_INTERNAL, _INTERNAL_MESSAGE)
        _log.warning(
            "DCI callback %s rejected by the sink (%s %s) sender_id=%r message_id=%r",
            label,
            status,
            code,
            _clip(sender_id),
            _clip(message_id),
        )
        return status, _errors(code, str(text))


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= _LOG_FIELD_CHARS else value[:_LOG_FIELD_CHARS] + "…"
